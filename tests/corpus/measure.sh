#!/usr/bin/env bash
# The real-world yardstick of issue 17: how many APIM policy documents from public repositories
# compile with `portcullis policy check --allow-unknown`.
#
#   measure.sh [DOCS_DIR]              (default: $CORPUS_DOCS, else docs/ next to this script)
#   PORTCULLIS=/path/to/portcullis measure.sh   (default: bin/portcullis next to this script,
#                                                 else `portcullis` on PATH)
#
# The documents are not in this repository (they belong to their authors): docs/policies.md says
# how the yardstick was collected. A manifest.tsv (file, repo, path, commit) next to DOCS_DIR adds
# a per-repository line.
#   VERBOSE=1 measure.sh               (also lists every document with its class)
#
# Each document is classified:
#   compiles     the check passes
#   refused      the first real error is "unsupported policy <x>" or "unknown policy <x>"
#   expression   the first real error is inside a C# expression
#   other        the first real error is another policy error (attributes, placement, values)
#   malformed    excluded: the XML itself is broken (the error is the XML parser's)
#   templated    excluded: every error points at a deploy-time placeholder ([parameters(..)],
#                ${var}, __token__, #{token}#, $(var), {single-brace} notebook placeholders)
# The percentage counts compiles over (compiles + refused + expression + other).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
docs="${1:-${CORPUS_DOCS:-$here/docs}}"
bin="${PORTCULLIS:-}"
if [ -z "$bin" ]; then
    if [ -x "$here/bin/portcullis" ]; then bin="$here/bin/portcullis"; else bin="$(command -v portcullis)"; fi
fi
[ -x "$bin" ] || { echo "no portcullis binary (set PORTCULLIS)" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
n=0
for f in "$docs"/*.xml; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    base="$(basename "$f")"
    "$bin" policy check --allow-unknown "$f" >"$out/$base.out" 2>&1
    echo $? >"$out/$base.rc"
done
echo "portcullis: $bin ($n documents in $docs)"
python3 - "$docs" "$out" <<'PY'
import os, re, sys, collections
docs, out = sys.argv[1], sys.argv[2]
verbose = os.environ.get("VERBOSE") == "1"
PLACEHOLDER = re.compile(
    r"\[(parameters|variables|concat|format|resourceId)\(|\$\{[A-Za-z_][\w.\-]*\}|__[A-Za-z][\w\-]*__"
    r"|#\{[\w.\-]+\}#|\$\([\w.\-]+\)|(?<![{\w$])\{[A-Za-z][\w\-]*\}(?!\})|%\{?[A-Z][A-Z_]+\}?%"
)
XML = ("malformed ", "only one root element", "unexpected end tag", "is never closed",
       "the document has no root element", "is repeated", "elements nest deeper",
       "text is not allowed directly")
ERR = re.compile(r"^error: (.*)$")
LOC = re.compile(r"^\s*--> (.*):(\d+):(\d+)$")

def parse(text):
    """The errors of one check: (message, line, column, source line)."""
    errors, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = ERR.match(line)
        if not m or m.group(1) == "the policy check failed":
            continue
        msg, ln, col, src = m.group(1), None, None, ""
        if i + 1 < len(lines) and (l := LOC.match(lines[i + 1])):
            ln, col = int(l.group(2)), int(l.group(3))
            for j in range(i + 2, min(i + 6, len(lines))):
                s = re.match(r"^\s*(\d+) \|(.*)$", lines[j])
                if s:
                    src = s.group(2)
                    break
        errors.append((msg, ln, col, src))
    return errors

def expression_spans(text):
    """Byte-free (character) spans of every @(...) and @{...} in the raw text, strings skipped."""
    spans, i, n = [], 0, len(text)
    while i < n - 1:
        if text[i] == "@" and text[i + 1] in "({":
            open_, close = text[i + 1], ")" if text[i + 1] == "(" else "}"
            depth, j = 0, i + 1
            while j < n:
                c = text[j]
                if c == '"' or c == "'":
                    verbatim = j > 0 and text[j - 1] == "@" and c == '"'
                    j += 1
                    while j < n and text[j] != c:
                        if text[j] == "\\" and not verbatim:
                            j += 1
                        elif verbatim and text[j] == '"' and j + 1 < n and text[j + 1] == '"':
                            j += 1
                        if text[j:j + 1] == "\n" and c == "'":
                            break
                        j += 1
                elif c == open_:
                    depth += 1
                elif c == close:
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            spans.append((i, j))
            i = j + 1 if j > i else i + 1
        else:
            i += 1
    return spans

def offset(text, line, col):
    lines = text.split("\n")
    if line is None or line < 1 or line > len(lines):
        return None
    return sum(len(l) + 1 for l in lines[: line - 1]) + col - 1

def kind(msg, text=None, line=None, col=None):
    if msg.startswith(("unsupported policy <", "unknown policy <")):
        return "refused"
    if any(x in msg for x in XML):
        return "xml"
    if text is not None:
        at = offset(text, line, col)
        if at is not None and any(a <= at <= b for a, b in expression_spans(text)):
            return "expression"
        return "other"
    return "other"

def key(msg):
    m = re.match(r"^(unsupported|unknown) policy <([^>]+)>", msg)
    if m:
        return f"{m.group(1)} policy <{m.group(2)}>"
    return msg

classes, first, every, exprs = collections.Counter(), collections.Counter(), collections.Counter(), collections.Counter()
listing = []
for name in sorted(os.listdir(docs)):
    if not name.endswith(".xml"):
        continue
    rc = int(open(os.path.join(out, name + ".rc")).read().strip())
    text = open(os.path.join(docs, name), encoding="utf-8", errors="replace").read()
    if rc == 0:
        classes["compiles"] += 1
        listing.append((name, "compiles", ""))
        continue
    errors = parse(open(os.path.join(out, name + ".out"), encoding="utf-8", errors="replace").read())
    K = lambda e: kind(e[0], text, e[1], e[2])
    templated = lambda e: bool(PLACEHOLDER.search(e[3])) and K(e) != "refused"
    if not errors:
        cls, why = "other", "no diagnostic (exit %d)" % rc
        first[why] += 1; every[why] += 1
    elif any(K(e) == "xml" for e in errors):
        cls = "templated" if PLACEHOLDER.search(text) else "malformed"
        why = errors[0][0]
    else:
        real = [e for e in errors if not templated(e)]
        if not real:
            cls, why = "templated", errors[0][0]
        else:
            cls, why = K(real[0]), real[0][0]
            first[key(why)] += 1
            for k in sorted({key(e[0]) for e in real}):
                every[k] += 1
            for k in sorted({e[0] for e in real if K(e) == "expression"}):
                exprs[k] += 1
    classes[cls] += 1
    listing.append((name, cls, why))

judged = sum(classes[c] for c in ("compiles", "refused", "expression", "other"))
total = sum(classes.values())
if verbose:
    for name, cls, why in listing:
        print(f"{cls:10} {name}  {why}")
    print()
print(f"documents: {total}; excluded: {classes['malformed']} malformed, {classes['templated']} templated")
print("classes: " + ", ".join(f"{c} {classes[c]}" for c in ("compiles", "refused", "expression", "other")))
pct = 100.0 * classes["compiles"] / judged if judged else 0.0
print(f"COMPILES: {classes['compiles']}/{judged} = {pct:.1f}% of the judged documents")
manifest = os.path.join(os.path.dirname(os.path.abspath(docs)), "manifest.tsv")
if os.path.exists(manifest):
    repo_of = {}
    for row in open(manifest, encoding="utf-8"):
        parts = row.rstrip("\n").split("\t")
        if len(parts) >= 2:
            repo_of[parts[0]] = parts[1]
    per = collections.defaultdict(collections.Counter)
    for name, cls, _ in listing:
        per[repo_of.get(name, "?")][cls] += 1
    print("\nper repository (compiles / judged, documents):")
    for repo, c in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
        j = sum(c[x] for x in ("compiles", "refused", "expression", "other"))
        print(f"{c['compiles']:4} / {j:<4} {sum(c.values()):4}  {repo}")
print("\nfirst blocker per document (documents):")
for k, v in first.most_common():
    print(f"{v:5}  {k}")
print("\nevery blocker per document (documents naming it at least once):")
for k, v in every.most_common():
    print(f"{v:5}  {k}")
print("\nexpression errors (distinct messages, documents):")
for k, v in exprs.most_common():
    print(f"{v:5}  {k}")
PY
