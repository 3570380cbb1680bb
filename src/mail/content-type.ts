/** A bare type/subtype token pair: anything else is served and sent as application/octet-stream. */
export const SAFE_CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i;
