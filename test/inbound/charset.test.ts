import Encoding from 'encoding-japanese';
import iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { analyzeMessage } from '../../src/jobs/inbound/analyze.js';
import { repairCharsets } from '../../src/jobs/inbound/charset-repair.js';
import { LOOP_HEADER } from '../../src/mail/compose.js';

/**
 * Undeclared and mislabelled charsets, built byte for byte with iconv-lite
 * and encoding-japanese: raw 8-bit headers, encoded words whose label lies,
 * bodies without a charset or with the wrong one, RFC 2231 and raw file
 * names, display names. Each must read as the text that was written, with
 * no U+FFFD; correctly labelled mail must read exactly as before.
 */

const OPTS = { envelopeFrom: 'sender@customer.example', mailDomain: 'help.test', loopHeader: LOOP_HEADER, attachmentMaxBytes: 1024 * 1024 };
type Piece = string | Buffer;
const bytes = (...pieces: Piece[]) => Buffer.concat(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
const sjis = (s: string) => iconv.encode(s, 'shift_jis');
const eucjp = (s: string) => iconv.encode(s, 'euc-jp');
const gbk = (s: string) => iconv.encode(s, 'gbk');
const jis = (s: string) => Buffer.from(Encoding.convert(Encoding.stringToCode(s), { to: 'JIS', from: 'UNICODE' }));
const b64word = (label: string, b: Buffer) => `=?${label}?B?${b.toString('base64')}?=`;
const pct = (b: Buffer) => [...b].map((x) => `%${x.toString(16).toUpperCase().padStart(2, '0')}`).join('');

/** A plain message: headers (pieces joined per line) and a text/plain body, CRLF. */
function message(headers: Piece[][], body: Piece = 'Hello', contentType: string | null = 'text/plain; charset=utf-8'): Buffer {
  const lines: Piece[][] = [
    ['From: Taro <taro@customer.example>'],
    ['To: support@help.test'],
    ['Message-ID: <x1@customer.example>'],
    ...headers,
  ];
  if (contentType) lines.push([`Content-Type: ${contentType}`]);
  return bytes(...lines.flatMap((l) => [...l, '\r\n']), 'MIME-Version: 1.0\r\n\r\n', body, '\r\n');
}

function withAttachment(dispositionPieces: Piece[]): Buffer {
  return bytes(
    'From: Taro <taro@customer.example>\r\nTo: support@help.test\r\nSubject: file\r\nMIME-Version: 1.0\r\n',
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n',
    '--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee the file\r\n',
    '--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n',
    ...dispositionPieces,
    '\r\n\r\n',
    Buffer.from('%PDF-1.4 test').toString('base64'),
    '\r\n--b1--\r\n',
  );
}

const analyze = (raw: Buffer) => analyzeMessage(raw, OPTS);
const noReplacement = (...texts: string[]) => expect(texts.filter((t) => t.includes('\ufffd'))).toEqual([]);

describe('charsets in headers', () => {
  it.each([
    ['raw Shift_JIS', sjis('お問い合わせの件（至急）')],
    ['raw EUC-JP', eucjp('お問い合わせの件（至急）')],
    ['raw UTF-8 (RFC 6532)', Buffer.from('お問い合わせの件（至急）', 'utf8')],
  ])('a %s subject reads as written', async (_label, subject) => {
    const a = await analyze(message([['Subject: ', subject]]));
    expect(a.subject).toBe('お問い合わせの件（至急）');
  });

  it('raw GBK in Subject and in the From display name (mail046) read as Chinese', async () => {
    const raw = message([['Subject: ', gbk('转发：整体提升企业服务水平')]]);
    const withName = Buffer.from(raw.toString('latin1').replace('From: Taro <', `From: "${gbk('武兰成').toString('latin1')}" <`), 'latin1');
    const a = await analyze(withName);
    expect(a.subject).toBe('转发：整体提升企业服务水平');
    expect(a.from).toEqual({ address: 'taro@customer.example', name: '武兰成' });
  });

  it('an encoded word labelled ISO-2022-JP that holds Shift_JIS (mail093) reads as Japanese, subject and display name', async () => {
    const raw = bytes(
      `From: ${b64word('ISO-2022-JP', sjis('ツール EXAMPLE'))} <bar@customer.example>\r\n`,
      'To: support@help.test\r\nSubject: ',
      sjis('ツール'),
      '\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n',
    );
    const a = await analyze(raw);
    expect(a.subject).toBe('ツール');
    expect(a.from).toEqual({ address: 'bar@customer.example', name: 'ツール EXAMPLE' });
  });

  it('correctly labelled encoded words (ISO-2022-JP, Shift_JIS, EUC-JP, split across words and folded lines) read as before', async () => {
    const half1 = jis('お問い合わせ');
    const raw = message([
      [`Subject: ${b64word('ISO-2022-JP', half1)}\r\n ${b64word('ISO-2022-JP', jis('の件'))}`],
      [`X-Other: ${b64word('Shift_JIS', sjis('テスト'))} ${b64word('EUC-JP', eucjp('です'))}`],
    ]);
    expect(repairCharsets(raw)).toBe(raw);
    const a = await analyze(raw);
    expect(a.subject).toBe('お問い合わせの件');
  });

  it('a raw Shift_JIS display name and a UTF-8-labelled word that holds Shift_JIS', async () => {
    const raw = bytes(
      'From: ',
      sjis('山田 太郎'),
      ' <yamada@customer.example>\r\n',
      'To: ',
      b64word('UTF-8', sjis('サポート窓口')),
      ' <support@help.test>\r\n',
      'Subject: hello\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n',
    );
    const a = await analyze(raw);
    expect(a.from).toEqual({ address: 'yamada@customer.example', name: '山田 太郎' });
    expect(a.to).toEqual([{ address: 'support@help.test', name: 'サポート窓口' }]);
  });
});

describe('charsets in bodies', () => {
  const ja = 'いつもお世話になっております。注文番号の確認をお願いします。\r\nよろしくお願いいたします。';
  it.each([
    ['Shift_JIS without charset', sjis(ja), 'text/plain'],
    ['EUC-JP without charset', eucjp(ja), 'text/plain'],
    ['ISO-2022-JP without charset (7-bit, escape sequences)', jis(ja), 'text/plain'],
    ['Shift_JIS labelled ISO-2022-JP', sjis(ja), 'text/plain; charset=iso-2022-jp'],
    ['EUC-JP labelled us-ascii', eucjp(ja), 'text/plain; charset=us-ascii'],
    ['Shift_JIS labelled UTF-8', sjis(ja), 'text/plain; charset="utf-8"'],
    ['Shift_JIS with an unknown label', sjis(ja), 'text/plain; charset=x-unknown-jp'],
    ['CP932 (NEC/IBM extensions: ①, ㈱) labelled Shift_JIS', iconv.encode(`${ja}①㈱`, 'cp932'), 'text/plain; charset=shift_jis'],
  ])('%s reads as written', async (_label, body, type) => {
    const a = await analyze(message([['Subject: body']], body, type));
    expect(a.text.replace(/\r\n/g, '\n').trim()).toBe(((_label as string).startsWith('CP932') ? `${ja}①㈱` : ja).replace(/\r\n/g, '\n'));
    noReplacement(a.text, a.visibleText);
    expect(a.japanese).toBe(true);
  });

  it('a us-ascii body with 8-bit bytes reads as Windows-1252 (mail022: 0xEE is "î")', async () => {
    const a = await analyze(
      message(
        [['Subject: x']],
        Buffer.from('Puzzled by judith bront\xee dave. \x93Quoted\x94 \x80 5', 'latin1'),
        'text/plain; charset=us-ascii',
      ),
    );
    expect(a.text.trim()).toBe('Puzzled by judith brontî dave. “Quoted” € 5');
  });

  it('a body that is mostly UTF-8 with stray Latin-1 bytes reads each sequence as what it is (mail060)', async () => {
    const body = bytes(Buffer.from('Here it goes - äöü - 差出人\r\n', 'utf8'), Buffer.from('Here it goes - \xe4\xf6\xfc - hi', 'latin1'));
    const qp = [...body].map((b) => (b >= 0x80 || b === 0x3d ? `=${b.toString(16).toUpperCase()}` : String.fromCharCode(b))).join('');
    const a = await analyze(
      bytes(message([['Subject: x'], ['Content-Transfer-Encoding: quoted-printable']], qp, 'text/plain; charset=iso-gb2312')),
    );
    expect(a.text.replace(/\r\n/g, '\n').trim()).toBe('Here it goes - äöü - 差出人\nHere it goes - äöü - hi');
  });

  it('a body without charset that is GBK reads as Chinese (mail023)', async () => {
    const a = await analyze(
      message([['Subject: x']], gbk('机房环境法规\r\n您好，这封信如果影响到您的生活和工作，我们向您诚恳的道歉。'), null),
    );
    expect(a.text.trim()).toBe('机房环境法规\n您好，这封信如果影响到您的生活和工作，我们向您诚恳的道歉。');
  });

  it('quoted-printable and base64 bodies are judged by their decoded bytes', async () => {
    const qp = [...sjis(ja)].map((b) => (b >= 0x80 || b === 0x3d ? `=${b.toString(16).toUpperCase()}` : String.fromCharCode(b))).join('');
    const raw = bytes(
      'From: Taro <taro@customer.example>\r\nTo: support@help.test\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n',
      '--alt\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n',
      qp,
      '\r\n',
      '--alt\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n',
      eucjp(`<p>${ja}</p>`).toString('base64'),
      '\r\n--alt--\r\n',
    );
    const a = await analyze(raw);
    expect(a.text.replace(/\r\n/g, '\n').trim()).toBe(ja.replace(/\r\n/g, '\n'));
    expect(a.originalHtml).toContain('注文番号の確認');
  });

  it('an HTML body without a MIME charset follows its <meta charset>', async () => {
    const html = bytes(
      '<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"></head><body><p>',
      sjis('ご注文ありがとうございます'),
      '</p></body></html>',
    );
    const a = await analyze(message([['Subject: x']], html, 'text/html'));
    expect(a.visibleText).toBe('ご注文ありがとうございます');
  });

  it('correctly labelled bodies are left byte for byte alone', () => {
    for (const [body, type] of [
      [sjis(ja), 'text/plain; charset=shift_jis'],
      [jis(ja), 'text/plain; charset=iso-2022-jp'],
      [Buffer.from('Grüße', 'utf8'), 'text/plain; charset=utf-8'],
      [Buffer.from('Gr\xfc\xdfe', 'latin1'), 'text/plain; charset=iso-8859-1'],
    ] as const) {
      const raw = message([['Subject: x']], body, type);
      expect(repairCharsets(raw)).toBe(raw);
    }
  });
});

describe('charsets in attachment names', () => {
  it.each([
    ['raw Shift_JIS in filename="…"', ['Content-Disposition: attachment; filename="', sjis('見積書.pdf'), '"']],
    ['raw GBK in filename="…" (mail015)', ['Content-Disposition: attachment; filename="', gbk('绩效管理,究竟谁错了.pdf'), '"']],
    [
      'an ISO-2022-JP-labelled encoded word holding Shift_JIS',
      [`Content-Disposition: attachment; filename="${b64word('ISO-2022-JP', sjis('見積書.pdf'))}"`],
    ],
    ['RFC 2231, correctly labelled ISO-2022-JP', [`Content-Disposition: attachment; filename*=ISO-2022-JP''${pct(jis('見積書.pdf'))}`]],
    [
      'RFC 2231, correctly labelled Shift_JIS, in continuations',
      [`Content-Disposition: attachment;\r\n filename*0*=Shift_JIS''${pct(sjis('見積'))};\r\n filename*1*=${pct(sjis('書.pdf'))}`],
    ],
    ['RFC 2231 labelled UTF-8 holding Shift_JIS', [`Content-Disposition: attachment; filename*=UTF-8''${pct(sjis('見積書.pdf'))}`]],
    ['RFC 2231 without a charset, holding EUC-JP', [`Content-Disposition: attachment; filename*=''${pct(eucjp('見積書.pdf'))}`]],
  ])('%s', async (label, pieces) => {
    const a = await analyze(withAttachment(pieces as Piece[]));
    expect(a.attachments.map((f) => f.filename)).toEqual([label.includes('GBK') ? '绩效管理,究竟谁错了.pdf' : '見積書.pdf']);
  });
});

describe('structure and hostile input', () => {
  it('a nested boundary that extends the outer one ("b" and "b--x") is not taken for the outer delimiter', async () => {
    const raw = bytes(
      'From: Taro <taro@customer.example>\r\nTo: support@help.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n',
      '--b\r\nContent-Type: multipart/related; boundary="b--x"\r\n\r\n',
      '--b--x\r\nContent-Type: image/gif\r\nContent-ID: <i1>\r\n\r\nGIF89a\r\n--b--x--\r\n',
      '--b\r\nContent-Type: text/plain\r\n\r\n',
      sjis('お世話になっております。'),
      '\r\n',
      '--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="a.bin"\r\n\r\n',
      Buffer.from([0x81, 0x82, 0xff]),
      '\r\n--b--\r\n',
    );
    const a = await analyze(raw);
    expect(a.text.trim()).toBe('お世話になっております。');
    noReplacement(a.text);
    expect(a.attachments.find((f) => f.filename === 'a.bin')?.content).toEqual(new Uint8Array([0x81, 0x82, 0xff]));
  });

  it('thousands of encoded words or RFC 2231 sections, and megabytes of undeclared 8-bit text, are repaired in one pass', () => {
    const words = Buffer.from(`Subject: ${`=?iso-2022-jp?B?${sjis('テスト').toString('base64')}?= `.repeat(20_000)}\r\n\r\nx`);
    expect(repairCharsets(words).toString('utf8')).toContain('=?UTF-8?B?');
    const sections = Array.from({ length: 10_000 }, (_v, i) => `filename*${i}*=${i === 0 ? "''" : ''}${pct(sjis('見積もり'))}`).join('; ');
    const utf8 = encodeURIComponent('見積もり');
    expect(repairCharsets(Buffer.from(`Content-Type: text/plain; ${sections}\r\n\r\nx`)).toString('utf8')).toContain(
      `filename*=UTF-8''${utf8.repeat(10_000)}\r\n`,
    );
    const body = message(
      [['Subject: x']],
      Buffer.concat(Array.from({ length: 20_000 }, () => sjis('お世話になっております。'))),
      'text/plain',
    );
    expect(repairCharsets(body).toString('latin1')).toContain('charset=cp932');
  });
});
