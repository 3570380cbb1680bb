import { createHash } from 'node:crypto';
import busboy from 'busboy';
import { AppError } from '../errors.js';

/**
 * The comment form with files, parsed as it arrives (busboy) instead of
 * buffered whole and parsed into several copies: each file's bytes are held
 * once, in chunks, and the limits are checked on every chunk, so a file over
 * ATTACHMENT_MAX_BYTES or past the user's upload quota stops the read there
 * (413) instead of after the whole body. The CSRF token is a form field; it is
 * checked the moment it arrives (our form sends it first), and a form whose
 * token is missing or wrong is refused before anything of it is used.
 */

/** A file as the browser sent it: the caller sanitises the name and type. */
export interface UploadedFile {
  filename: string;
  mimeType: string;
  content: Buffer;
  sha256: string;
}

export interface StreamedForm {
  fields: Record<string, string>;
  /** Fields cut at the field size limit (always too long for their purpose). */
  truncated: Set<string>;
  files: UploadedFile[];
  /** More than `maxFiles` files were sent; the extra ones were skipped unread. */
  tooManyFiles: boolean;
}

export interface StreamLimits {
  /** The whole body, however it is sent (Content-Length or chunked). */
  maxBodyBytes: number;
  maxFileBytes: number;
  maxFiles: number;
  maxFieldBytes: number;
  /** File bytes this request may still bring under the user's quota (Infinity: no quota). */
  quotaBytes: number;
  /** Whether the submitted CSRF token is the right one for this request. */
  tokenValid(token: string): boolean;
}

/**
 * Browsers escape LF, CR and `"` in multipart names as %0A, %0D and %22
 * (WHATWG multipart/form-data encoding); busboy passes them through as sent.
 */
function decodeFormName(name: string): string {
  return name.replace(/%(0A|0D|22)/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Our text fields: body, _csrf. Anything else is ignored, but a form of thousands of fields is refused. */
const MAX_FIELDS = 20;

export async function readStreamedForm(req: Request, limits: StreamLimits): Promise<StreamedForm> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { 'content-type': req.headers.get('content-type') ?? '' },
      // Browsers send file names as raw UTF-8 (busboy's default would read them as Latin-1).
      defParamCharset: 'utf8',
      limits: { fileSize: limits.maxFileBytes, files: limits.maxFiles, fields: MAX_FIELDS, fieldSize: limits.maxFieldBytes },
    });
  } catch (err) {
    // Not a form at all (or no boundary): no token can have been sent.
    throw new AppError('CSRF', 'unparseable form body', { cause: err });
  }
  if (!req.body) throw new AppError('CSRF', 'missing CSRF token');

  const form: StreamedForm = { fields: {}, truncated: new Set(), files: [], tooManyFiles: false };
  let tokenChecked = false;
  let fileBytes = 0;
  let failure: unknown = null;
  let settle!: { resolve: () => void; reject: (err: unknown) => void };
  const finished = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  const fail = (err: unknown) => {
    if (failure) return;
    failure = err;
    settle.reject(err);
  };
  let pendingFiles = 0;
  let parsed = false;
  const maybeDone = () => {
    if (parsed && pendingFiles === 0 && !failure) settle.resolve();
  };

  parser.on('field', (name, value, info) => {
    if (failure) return;
    if (name === '_csrf') {
      if (!limits.tokenValid(value)) return fail(new AppError('CSRF', 'missing or wrong CSRF token'));
      tokenChecked = true;
      return;
    }
    form.fields[name] = value;
    if (info.valueTruncated) form.truncated.add(name);
  });
  parser.on('file', (name, stream, info) => {
    // Destroying the parser on a refusal errors the file being read ("Unexpected end of file"): expected, not a crash.
    stream.on('error', () => {});
    // An empty file input still submits one nameless, empty part; other names are not ours.
    if (failure || name !== 'files') return void stream.resume();
    pendingFiles += 1;
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      if (failure) return;
      size += chunk.length;
      fileBytes += chunk.length;
      if (fileBytes > limits.quotaBytes) return fail(new AppError('UPLOAD_QUOTA', 'upload quota exceeded'));
      chunks.push(chunk);
      hash.update(chunk);
    });
    // busboy stops the file at maxFileBytes and says so: refuse now, without reading the rest.
    stream.on('limit', () => fail(new AppError('UPLOAD_TOO_LARGE', `a file is larger than ${limits.maxFileBytes} bytes`)));
    stream.on('error', (err) => fail(new AppError('CSRF', 'unparseable form body', { cause: err })));
    stream.on('end', () => {
      pendingFiles -= 1;
      if (!failure && (size > 0 || info.filename)) {
        form.files.push({
          filename: decodeFormName(info.filename ?? ''),
          mimeType: info.mimeType,
          content: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size),
          sha256: hash.digest('hex'),
        });
      }
      maybeDone();
    });
  });
  parser.on('filesLimit', () => (form.tooManyFiles = true));
  parser.on('fieldsLimit', () => fail(new AppError('VALIDATION', 'too many form fields')));
  parser.on('error', (err) => fail(new AppError('CSRF', 'unparseable form body', { cause: err })));
  parser.on('close', () => {
    parsed = true;
    maybeDone();
  });

  const reader = req.body.getReader();
  let bodyBytes = 0;
  const pump = async () => {
    for (;;) {
      if (failure) break;
      const { done, value } = await reader.read();
      if (done) {
        parser.end();
        break;
      }
      if (failure) break;
      bodyBytes += value.length;
      if (bodyBytes > limits.maxBodyBytes) return fail(new AppError('UPLOAD_TOO_LARGE', `form larger than ${limits.maxBodyBytes} bytes`));
      if (!parser.write(value)) await new Promise((resolve) => parser.once('drain', resolve));
    }
  };
  try {
    await Promise.all([pump().catch(fail), finished]);
  } finally {
    // Stop reading: whatever the client still sends is drained and dropped by the HTTP server.
    if (failure) {
      reader.cancel().catch(() => {});
      parser.destroy();
    }
  }
  if (!tokenChecked) throw new AppError('CSRF', 'missing CSRF token');
  return form;
}
