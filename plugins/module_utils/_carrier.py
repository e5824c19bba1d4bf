# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What mail clients, quoting, pagers and consoles do to kernel lines, undone.

``repair(text)`` takes the lines of one report window (oom_scan finds the
windows) and returns the kernel lines as the kernel printed them, with a
list of short notes saying what was guessed (``carrier_repairs`` of the
events those lines go into).  The rules, in order, per line:

* quote markers (``> ``, ``> > ``, ``>> ``, ``>``) are stripped, the rest
  kept byte-exact;
* ``dmesg -H`` stamps (``[Nov23 01:45]``, ``[  +0.000123]``) are dropped:
  they name no time the parser can use;
* a pager's cut (``less -S``: a long line ending in ``>``) is taken as it
  is, without the ``>``, and the last complete field before the cut named;
* two kernel records glued on one line are split at the second one's stamp;
* a line without a kernel prefix joins the kernel line before it (same
  quote level, nothing between; or, unquoted, one word or a few fields, after
  a quoted line at the wrap width: a reply's client re-wrapped it) when it continues a field pattern
  (``key=``, ``key:``, a digit, a bracket: what a kernel line continues
  with) or when that line was at a mail client's wrap width (the line and
  the continuation's first word would not fit in MIN_WRAP_WIDTH columns);
  it is glued without a space inside a comma list (``...,task=foo,pid=10``
  cut mid-field) or when every wrapped line of the window has one length
  (a cutter at a fixed column, not at spaces), with one space otherwise;
* in a text where no line has a record prefix (messages pasted bare) each
  line is a record, and so are the bare lines a window starts with;
* an indented line is a multi-line record's own line (dmesg prints them so,
  a mail client's wrap drops the indent): kept as it is;
* any other line (harness ``# ok 6``, ``<trim>``, mkfs progress, prose
  between quoted blocks) is dropped; the report goes on.

Standard library only.
"""


import re

from ansible_collections.oomguard.linux.plugins.module_utils.oom_report import ELIDED

# Narrowest wrap width mail clients use (72 is usual, 76 and 78 are seen).
MIN_WRAP_WIDTH = 64
# A pager cuts lines at the terminal's width; narrower than this it is not a pager.
MIN_PAGER_WIDTH = 60

_QUOTE = re.compile(r'(?:> ?)+')
# dmesg -H: a minute header "[Nov23 01:45]" / "[Nov 23 01:45]", then deltas "[  +0.000123]".
_HUMAN = re.compile(r'\[(?:[A-Z][a-z]{2} ?\d{1,2} \d\d:\d\d|\s*[+<]\s*\d+\.\d+>?)\] ?')
# What starts a kernel (or other program's) record in any carrier split_prefix reads.
_RECORD_START = re.compile(
    r'(?:<\d+>)?\[\s*\d+\.\d+\]|\[\S+ +\S+ +\d{1,2} \d\d:\d\d:\d\d \d{4}\]|[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d[ .]'
    r'|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|<\d+>1 |\d+,\d+,\d+,[^;]*;|\d+ \[|kernel: ')
_RECORD_START_BYTES = re.compile(_RECORD_START.pattern.encode())
# A second record glued to the end of a line (a newline lost in a copy).
# A terminal copy pads each record to the screen's width, so padding may sit between the two.
_GLUED = re.compile(r'(?<=\S)(?: {2,})?(?=(?:<\d+>)?\[\s*\d+\.\d{6}\] |[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \S+ kernel: )')
# How the rest of a wrapped kernel line starts: a field ("order=0,", "total-vm:",
# "UID:0", "oom-killer:"), a number ("3*16kB", "45,uid=0"), a bracket or separator.
_FIELD_START = re.compile(r'(?:[a-z_][\w+-]*[=:]|[A-Z][A-Za-z_]*:\d|\d|[,)=:/*]|\([^\s()]*\))')
# Console and mail lines that are never a kernel line's rest.
_NOISE = re.compile(
    r'\s*(?:#|<trim>|<snip>|\[\.\.\.\]|\(\.\.\.|\(rest of|\.\.\.|-- |(?:not )?ok \d|mke2fs|mkfs|Discarding device|Creating filesystem'
    r'|Allocating group tables|Writing inode tables|Creating journal|Writing superblocks|Filesystem UUID'
    r'|Superblock backups|\d+/\d+\s*(?:done)?\s*$|On .* wrote:|\S+ <\S+@\S+> wrote:)')
# A list of fields without spaces ("constraint=X,nodemask=(null),cpu"): a cut inside it lost no space.
_DENSE = re.compile(r'\w=[^\s,]*,\S')
# A word cut inside a value ("constraint=CON" + "STRAINT_MEMCG,nodemask=...").
_VALUE_END = re.compile(r'\w=[^\s,]*$')
# Stack markers ("<TASK>", "</IRQ>") end in ">" too; a pager's cut does not look like that.
_ANGLE_END = re.compile(r'<\/?[A-Z][A-Z_]*>$')
_COMPLETE_FIELD = re.compile(r'([A-Za-z_][\w-]*)[=:][^\s,]+[, ]')
# Which of a window's lines may need this module at all (the rest are parsed as they are).
# Each alternative fails at a line's first character or two: cheap on a clean window.
# An indented record (a Markdown code block or list, a terminal copy) is suspect too.
_SUSPECT = re.compile(r'^(?:>|[^\[<A-Z0-9 \n\r]|\[\s*[+<]\s*\d|\[[A-Z][a-z]{2} ?\d{1,2} \d\d:\d\d\]'
                      r'| +(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d |\[\s*\d+\.\d+\] |\d{4}-\d\d-\d\dT\d\d:))', re.M)
# Spaces a terminal copy pads a line with, up to the screen's width.
_PADDING = re.compile(r'  +$')


def suspect(text):
    """True when some line of text is quoted, bare, dmesg -H stamped or pager-cut."""
    if _SUSPECT.search(text) is not None:
        return True
    # Pager cuts: only the few lines ending in ">" (most are "<TASK>" and the like) are looked at.
    ends = []
    end = text.find('>\n')
    while end >= 0:
        ends.append(end)
        end = text.find('>\n', end + 1)
    if text.endswith('>'):
        ends.append(len(text) - 1)
    for end in ends:
        start = text.rfind('\n', 0, end) + 1
        if end + 1 - start >= MIN_PAGER_WIDTH and not _ANGLE_END.search(text[start:end + 1]):
            return True
    return False


def _unquote(line):
    """(quote level, rest) of one line."""
    if line[:1] != '>':
        return 0, line
    marker = _QUOTE.match(line).group(0)
    return marker.count('>'), line[len(marker):]


def _glue(previous, rest):
    """'' when rest continues previous's last word (a cut inside a comma list), else ' '."""
    tail = previous.rsplit(' ', 1)[-1]
    head = rest.split(' ', 1)[0]
    if (tail.endswith('=') or _DENSE.search(tail) or (tail.endswith(',') and _DENSE.match(head))
            or (_VALUE_END.search(tail) and ',' in head)):
        return ''
    return ' '


def _continues(piece, rest, before=''):
    """Whether rest (no record prefix, same quote level) is the wrapped rest of the line ending in piece.

    before: the piece before piece when piece is itself a wrapped rest (a
    second, wider wrap leaves a short remainder: the two were one line).
    """
    if not rest.strip() or _NOISE.match(rest):
        return False
    if _FIELD_START.match(rest):
        return True
    word = len(rest.split(' ', 1)[0])
    return len(piece) + 1 + word > MIN_WRAP_WIDTH or (before and len(before) + len(piece) + 2 + word > MIN_WRAP_WIDTH)


# A quoted line re-wrapped by the next mail client leaves its last word,
# unquoted, on a line of its own (a few fields at most this long).
MAX_REWRAP_REST = 24


def _joins(level, last_level, piece, before, line, last_raw):
    """The join rule (see the module's doc) for a line without a record prefix."""
    if last_level is None:
        return False
    if level == last_level:
        return _continues(piece, line, before)
    # A reply's client re-wrapped a quoted line: its rest lost the quote marker.
    return (level == 0 < last_level and not _NOISE.match(line)
            and (' ' not in line.strip() or (len(line) <= MAX_REWRAP_REST and _FIELD_START.match(line)))
            and len(last_raw) + 1 + len(line.split(' ', 1)[0]) > MIN_WRAP_WIDTH)


def continues(previous, line):
    """Whether line (one physical line) is the wrapped rest of previous (the line before it).

    Used by oom_scan to take the rest of a window's last line into the window.
    """
    level, rest = _unquote(line)
    last_level, piece = _unquote(previous)
    if not rest.strip() or _RECORD_START.match(rest) or _HUMAN.match(rest):
        return False
    return _joins(level, last_level, piece, '', rest, previous)


def carried(previous, line):
    """What stands for the line before the next one once line joined previous:
    line, with previous's quote marker when a re-wrap had dropped it."""
    if line[:1] != '>' and previous[:1] == '>':
        return _QUOTE.match(previous).group(0) + line
    return line


def starts_record(line_bytes):
    """True when a line (bytes, unquoted; indented as a block or not) starts with a record prefix: never a wrapped rest."""
    return _RECORD_START_BYTES.match(line_bytes.lstrip(b' ')) is not None


def _cut_note(message):
    """'pager cut: <line> after <last complete field>'."""
    if 'Killed process' in message or 'Kill process' in message or 'out of memory' in message.lower():
        kind = 'kill line'
    elif 'oom-kill:' in message:
        kind = 'oom-kill line'
    elif ' invoked oom' in message:
        kind = 'invoked line'
    else:
        kind = 'line'
    name = None
    for anchor, start in (('oom-killer:', 'comm'), ('oom-kill:', 'its start')):
        at = message.find(anchor)
        if at >= 0:
            fields = _COMPLETE_FIELD.findall(message[at + len(anchor):])
            name = fields[-1] if fields else start
            break
    else:
        fields = _COMPLETE_FIELD.findall(message)
        name = fields[-1] if fields else None
    if kind == 'kill line':
        kill = re.search(r'Kill(?:ed)? process (\d+)[ ,]*(\(.*?\))?', message)
        if kill:
            fields = _COMPLETE_FIELD.findall(message[kill.end():])
            name = fields[-1] if fields else ('comm' if kill.group(2) else 'pid')
        else:
            name = 'origin'
    return 'pager cut: %s after %s' % (kind, name or 'its prefix')


def _cut_width(rows):
    """The width of a cutter that breaks lines at a fixed column whatever is
    there (not at spaces): every line followed by a bare one is that long, or
    a multiple of it (a terminal copy joins a record padded to the screen's
    width with the next one), two lines at least.  None when the wraps fall
    at spaces."""
    widths = set()
    count = 0
    for row, following in zip(rows, rows[1:]):
        rest = _unquote(following)[1]
        if (not rest.strip() or rest[:1] in ' \t' or _RECORD_START.match(rest) or _HUMAN.match(rest)
                or _NOISE.match(rest)):
            continue
        widths.add(len(row.rstrip('\r')))
        count += 1
    if count < 2 or not widths:
        return None
    width = min(widths)
    if width < MIN_WRAP_WIDTH or any(other % width for other in widths):
        return None
    return width


def _indentation(rows):
    """The spaces every non-blank row starts with when the rows are prefixed
    records indented as a block (a Markdown code block or list item); else 0."""
    rows = [row for row in rows if row.strip()]
    if not rows or rows[0][:1] != ' ':
        return 0
    indent = min(len(row) - len(row.lstrip(' ')) for row in rows)
    if not indent or not any(_RECORD_START.match(row[indent:]) for row in rows):
        return 0
    return indent


def repair(text):
    """(lines, repairs) for the text of one window.

    lines: [text, cut] per kernel line, text with its record prefix, cut
    True for a line a pager cut short.  repairs: short notes of what was
    done, [] when nothing was (then lines is the text's lines as they are).
    """
    out = []
    levels = 0
    rejoined = glued = dropped = human = 0
    notes = []
    last_level = None  # quote level of the line out[-1] came from; None: no kernel line open
    piece = before = last_raw = ''
    rows = text.split('\n')
    if '  \n' in text or '  \r\n' in text or text.endswith('  '):
        rows = [_PADDING.sub('', row.rstrip('\r')) for row in rows]
    indent = _indentation(rows)
    if indent:
        rows = [row[indent:] for row in rows]
    # Messages pasted without any prefix: each line is its own record.
    bare = not any(_RECORD_START.match(_unquote(row)[1]) or _HUMAN.match(_unquote(row)[1]) for row in rows)
    cut_width = _cut_width(rows)
    for raw in rows:
        raw = raw.rstrip('\r')
        level, line = _unquote(raw)
        levels = max(levels, level)
        if not line.strip():
            last_level = None  # a blank line ends any wrapped line
            continue
        cut = False
        if len(raw) >= MIN_PAGER_WIDTH and line.endswith('>') and not _ANGLE_END.search(line):
            line = line[:-1]
            cut = True
        stamp = _HUMAN.match(line)
        if stamp:
            human += 1
            line = line[stamp.end():]
        elif ELIDED.match(line.strip()):
            # The author's own cut ("[...]", "(snipped)"): the parser reads it (the
            # victim was cut out, not lost), so it is kept as a line of its own.
            out.append([line.strip(), False])
            last_level = None
            continue
        elif not bare and not _RECORD_START.match(line):
            if not out or line[:1] in ' \t':
                # The window starts inside a record, or a multi-line record's own
                # indented line (dmesg, journalctl): taken as a line, as without this layer.
                out.append([line, cut])
                last_level = level
                before, piece, last_raw = '', line, raw
                continue
            if _joins(level, last_level, piece, before, line, last_raw):
                kept = out[-1][0].rstrip()
                glue = '' if cut_width and len(last_raw) % cut_width == 0 else _glue(kept, line)
                joined = (out[-1][0] if not glue else kept) + glue + line
                if not cut and joined.endswith('>') and len(joined) >= MIN_PAGER_WIDTH and not _ANGLE_END.search(line):
                    # A pager's cut, then a mail client's wrap: the '>' ends the last piece.
                    joined = joined[:-1]
                    cut = True
                out[-1][0] = joined
                out[-1][1] = out[-1][1] or cut
                before, piece = piece, line
                last_raw = raw
                rejoined += 1
                continue
            dropped += 1
            last_level = None
            continue
        if (bare and out and level == last_level and last_raw.endswith(' ') and line[:1] != ' '
                and _FIELD_START.match(line)):
            # A bare paste wrapped by a mail client that kept the soft break's
            # trailing space (format=flowed): the next field goes on the same line.
            out[-1][0] = out[-1][0].rstrip() + ' ' + line
            before, piece, last_raw = piece, line, raw
            rejoined += 1
            continue
        parts = _GLUED.split(line) if len(line) > 40 else [line]
        glued += len(parts) - 1
        for part in parts:
            out.append([part, False])
        out[-1][1] = cut
        last_level = level
        before, piece, last_raw = '', line, raw
    other_cuts = 0
    for entry in out:
        if entry[1]:
            note = _cut_note(entry[0])
            if note.startswith('pager cut: line '):
                other_cuts += 1  # a stack or meminfo line: counted, not named
            elif note not in notes:
                notes.append(note)
    if other_cuts:
        notes.append('pager cut: %d other line%s' % (other_cuts, '' if other_cuts == 1 else 's'))
    repairs = []
    if indent:
        repairs.append('removed %d-column indentation' % indent)
    if levels:
        repairs.append('unquoted %d level%s' % (levels, '' if levels == 1 else 's'))
    if human:
        repairs.append('dropped %d dmesg -H stamp%s' % (human, '' if human == 1 else 's'))
    if rejoined:
        repairs.append('rejoined %d wrapped line%s' % (rejoined, '' if rejoined == 1 else 's'))
    if glued:
        repairs.append('split %d glued record%s' % (glued, '' if glued == 1 else 's'))
    if dropped:
        repairs.append('dropped %d interleaved line%s' % (dropped, '' if dropped == 1 else 's'))
    return out, repairs + notes
