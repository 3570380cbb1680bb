import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeMessage } from '../../src/jobs/inbound/analyze.js';
import { splitHtmlQuote } from '../../src/jobs/inbound/html-content.js';
import { visibleReplyText } from '../../src/jobs/inbound/text-content.js';
import { LOOP_HEADER } from '../../src/mail/compose.js';

/**
 * Forward and quote headers of the major clients in English, German,
 * French, Spanish, Japanese and Chinese: new text above them is what the
 * sender wrote; a forward with no new text shows the forwarded mail.
 */

const SEPARATORS = [
  '-----Original Message-----',
  '---------- Forwarded message ---------',
  'Begin forwarded message:',
  '----- Original Nachricht ----',
  '-------- Ursprüngliche Nachricht --------',
  '-------- Weitergeleitete Nachricht --------',
  '-------- Message original --------',
  "-------- Message d'origine --------",
  '-------- Message transféré --------',
  '-----Mensaje original-----',
  '---------- Mensaje reenviado ----------',
  '-----元のメッセージ-----',
  '-------- 転送メッセージ --------',
  '------------------ 原始邮件 ------------------',
  '------------------ 原始郵件 ------------------',
];
const FORWARDED =
  'Von:     example@example.com\nAn:      bob@example.com\nDatum:   30.05.2017 16:17\nBetreff: Invoice\n\nDear Mrs. Weber,\n\nplease find the invoices attached.';

describe('forward separators', () => {
  it.each(SEPARATORS)('new text above "%s" is the visible text', (separator) => {
    expect(visibleReplyText(`Please see below.\n\n${separator}\n${FORWARDED}`)).toBe('Please see below.');
  });

  it.each(SEPARATORS)('a bare forward under "%s" shows the forwarded mail', (separator) => {
    const visible = visibleReplyText(` \n\n\n${separator}\n${FORWARDED}`);
    expect(visible.startsWith(separator)).toBe(true);
    expect(visible).toContain('please find the invoices attached.');
  });

  it.each(SEPARATORS)('in HTML, new text above "%s" is the visible text; a bare forward keeps the forwarded mail', (separator) => {
    const body = `<div>${separator}</div><div>Von: example@example.com<br>Betreff: Invoice</div><p>please find the invoices attached.</p>`;
    expect(splitHtmlQuote(`<p>Please see below.</p>${body}`).visibleText).toBe('Please see below.');
    expect(splitHtmlQuote(body).visibleText).toContain('please find the invoices attached.');
  });

  it('mail057: the bare German forward shows the forwarded invoice mail, not just its separator', async () => {
    const raw = readFileSync(path.resolve(import.meta.dirname, '../../../shared/corpus/zammad-zammad/test/data/mail/mail057.box'));
    const a = await analyzeMessage(raw, {
      envelopeFrom: 'x@corpus.example',
      mailDomain: 'help.test',
      loopHeader: LOOP_HEADER,
      attachmentMaxBytes: 1024 * 1024,
    });
    expect(a.visibleText.startsWith('----- Original Nachricht ----\nVon:     example@example.com')).toBe(true);
    expect(a.visibleText).toContain('anbei mal wieder ein paar Invoice.');
  });
});

describe('quote headers', () => {
  it.each([
    ['On Tue, 1 Mar 2011 at 18:02, Abhishek Kona <a@example.com> wrote:'],
    ['Am 01.02.2020 um 10:00 schrieb Max Muster <max@example.de>:'],
    ['Le 1 févr. 2020 à 10:00, Jean <jean@example.fr> a écrit :'],
    ['El 1 feb 2020, a las 10:00, Ana <ana@example.es> escribió:'],
    ['2020年2月1日(土) 10:00 山田太郎 さんは書きました:'],
    ['在 2020年2月1日 10:00，张三 <zhang@example.cn> 写道：'],
  ])('text above "%s" is the reply, quoted or not below it', (header) => {
    expect(visibleReplyText(`Thanks, that fixed it.\n\n${header}\n> Did you restart it?\n> Regards`)).toBe('Thanks, that fixed it.');
    expect(visibleReplyText(`Thanks, that fixed it.\n\n${header}\nDid you restart it?\nRegards`)).toBe('Thanks, that fixed it.');
  });

  it('an interleaved answer below a quote header is kept', () => {
    const visible = visibleReplyText(
      'Hi,\nOn Tue, 2011-03-01 at 18:02 +0530, Abhishek Kona wrote:\n> How do I clear a bucket?\n\nList the keys and delete each one.\n',
    );
    expect(visible).toContain('List the keys and delete each one.');
  });

  it('the Outlook From/Sent/To/Subject block (German and Japanese too) ends the reply', () => {
    expect(
      visibleReplyText(
        'Done.\n\nFrom: Support <support@help.test>\nSent: Monday, 1 March 2021 10:00\nTo: Carol\nSubject: Re: printer\n\nold text',
      ),
    ).toBe('Done.');
    expect(
      visibleReplyText(
        'Erledigt.\n\nVon: Support <support@help.test>\nGesendet: Montag, 1. März 2021 10:00\nAn: Carol\nBetreff: AW: Drucker\n\nalt',
      ),
    ).toBe('Erledigt.');
    expect(
      visibleReplyText(
        '対応しました。\n\n差出人: サポート <support@help.test>\n送信日時: 2021年3月1日 10:00\n宛先: 山田\n件名: RE: プリンター\n\n旧',
      ),
    ).toBe('対応しました。');
  });

  it('a sentence that merely mentions a forwarded message is not a separator', () => {
    expect(visibleReplyText('I never got the forwarded message you mentioned.\nCan you send it again?')).toBe(
      'I never got the forwarded message you mentioned.\nCan you send it again?',
    );
  });

  it('stays linear on long runs of dashes, spaces and quote markers (no pattern backtracks across lines)', () => {
    const hostile = `${'- '.repeat(200_000)}\n${'>'.repeat(100_000)} wrote:\n${' '.repeat(200_000)}Original Message x\n`;
    expect(visibleReplyText(`hello\n${hostile}`).startsWith('hello')).toBe(true);
    // Thousands of interleaved quote headers: each is checked against one precomputed pass, not a rescan.
    const interleaved = Array.from({ length: 20_000 }, (_v, i) => `On Mon, A <a@b.example> wrote:\n> question ${i}\nanswer ${i}`).join(
      '\n',
    );
    expect(visibleReplyText(`hello\n${interleaved}`).startsWith('hello')).toBe(true);
  });
});
