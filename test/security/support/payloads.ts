/**
 * Stored-XSS payloads. Each one, if it ever ran, would leave a trace the
 * browser instruments see: an alert/console line containing "XSS-", a page
 * error, or a request to the beacon. Mutation-XSS and parser-confusion
 * shapes are included because sanitisers are usually beaten by those, not by
 * a plain <script>.
 */
export function hostileHtml(beacon: string): string {
  return [
    '<p id="hello">Hello from a hostile mail</p>',
    `<script>alert('XSS-script');fetch('${beacon}/script')</script>`,
    `<img src=x onerror="alert('XSS-img');fetch('${beacon}/img-onerror')">`,
    `<svg onload="alert('XSS-svg')"><script>alert('XSS-svg-script')</script><a xlink:href="javascript:alert('XSS-xlink')"><text y="20">svg link</text></a></svg>`,
    `<iframe srcdoc="<script>parent.alert('XSS-srcdoc')</script>"></iframe>`,
    `<iframe src="javascript:alert('XSS-iframe')"></iframe>`,
    `<a id="jslink" href="javascript:alert('XSS-link')">click me</a>`,
    `<a id="jslink2" href="JaVaScRiPt&colon;alert('XSS-link2')">click me too</a>`,
    `<a id="jslink3" href="&#106;&#97;vascript:alert('XSS-link3')">entity link</a>`,
    `<a id="datalink" href="data:text/html;base64,PHNjcmlwdD5hbGVydCgnWFNTLWRhdGEnKTwvc2NyaXB0Pg==">data link</a>`,
    `<object data="javascript:alert('XSS-object')"></object><embed src="javascript:alert('XSS-embed')">`,
    `<meta http-equiv="refresh" content="0;url=javascript:alert('XSS-meta')">`,
    `<base href="javascript:alert('XSS-base')//">`,
    `<form action="javascript:alert('XSS-form')"><button id="formbtn" formaction="javascript:alert('XSS-formaction')">submit</button></form>`,
    `<details open ontoggle="alert('XSS-details')"><summary>toggle</summary>x</details>`,
    `<div style="background:url(javascript:alert('XSS-style'))" onmouseover="alert('XSS-hover')">hover me</div>`,
    `<math><mtext><table><mglyph><style><img src=x onerror="alert('XSS-mxss')"></style></mglyph></table></mtext></math>`,
    `<noscript><p title="</noscript><img src=x onerror=alert('XSS-noscript')>"></noscript>`,
    `<svg><style><img src=x onerror=alert('XSS-svgstyle')></style></svg>`,
    `<img src="${beacon}/remote-image">`,
    `<link rel="stylesheet" href="${beacon}/stylesheet">`,
    `<style>@import '${beacon}/import'; body{background:url('${beacon}/bg')}</style>`,
    `<video><source onerror="alert('XSS-video')"></video>`,
    `<input autofocus onfocus="alert('XSS-focus')">`,
    `<textarea><script>alert('XSS-textarea')</script></textarea>`,
    `<!--<img src=x onerror=alert('XSS-comment')>-->`,
    `<a href="#" onclick="alert('XSS-onclick')" id="clicklink">plain click</a>`,
  ].join('\n');
}

export const HOSTILE_TEXT = `<script>alert('XSS-text')</script> "><img src=x onerror=alert('XSS-text-img')> Please help.`;
export const HOSTILE_REPLY_TEXT = `Still broken </div><script>alert('XSS-reply')</script><img src=x onerror=alert('XSS-reply-img')>`;
export const HOSTILE_NAME = `<svg onload=alert('XSS-name')> "Mallory"`;
export const HOSTILE_SUBJECT_PREFIX = `<img src=x onerror=alert('XSS-subject')><script>alert('XSS-subject2')</script>`;
/** Survives filename sanitising (no < > "): tries to break out of a single-quoted attribute instead. */
export const HOSTILE_FILENAME_QUOTE = `a' onmouseover='alert(1)' x='&amp;.txt`;
/** Gets its < > " replaced on the way in; what is left must still be inert text. */
export const HOSTILE_FILENAME_TAGS = `"><img src=x onerror=alert('XSS-file')>.html`;
