#!/usr/bin/env bash
# Rebuild src/locallama/web/vendor/ from the npm registry: the chat page's libraries at
# pinned versions, their ES-module (or minified) files and their licenses.  The result
# is committed: users need no build step and the page no network.  Needs npm.
#
#   scripts/vendor_web.sh            # rewrite vendor/ from the pinned versions below
#
# Bare imports ("preact") are rewritten to relative files, so the page needs no import
# map (an inline script the Content-Security-Policy would have to allow).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=src/locallama/web/vendor
PREACT=11.2.0
HTM=3.1.1
MARKED=18.2.1
DOMPURIFY=3.4.18
HIGHLIGHT=11.12.0   # @highlightjs/cdn-assets: highlight.js prebuilt with its common languages
KATEX=0.19.1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "preact@$PREACT" "htm@$HTM" "marked@$MARKED" \
    "dompurify@$DOMPURIFY" "@highlightjs/cdn-assets@$HIGHLIGHT" "katex@$KATEX" >/dev/null)
for f in "$tmp"/*.tgz; do
    d="$tmp/$(basename "$f" .tgz)"; mkdir -p "$d"; tar -xzf "$f" -C "$d" --strip-components=1
done
P="$tmp/preact-$PREACT" H="$tmp/htm-$HTM" M="$tmp/marked-$MARKED" D="$tmp/dompurify-$DOMPURIFY"
HL="$tmp/highlightjs-cdn-assets-$HIGHLIGHT" K="$tmp/katex-$KATEX"

rm -rf "$OUT"; mkdir -p "$OUT/licenses" "$OUT/fonts"
cp "$P/dist/preact.mjs" "$OUT/preact.js"
sed -e 's#from *"preact"#from"./preact.js"#g' -e "s#from *'preact'#from'./preact.js'#g" \
    "$P/hooks/dist/hooks.mjs" > "$OUT/preact-hooks.js"
cp "$H/dist/htm.module.js" "$OUT/htm.js"
cp "$M/lib/marked.esm.js" "$OUT/marked.js"
cp "$D/dist/purify.es.mjs" "$OUT/purify.js"
cp "$HL/es/highlight.min.js" "$OUT/highlight.js"
cp "$HL/styles/github.min.css" "$OUT/hljs-light.css"
cp "$HL/styles/github-dark.min.css" "$OUT/hljs-dark.css"
cp "$K/dist/katex.mjs" "$OUT/katex.js"
# woff2 only: every browser that runs ES modules reads it
sed -E 's#,url\(fonts/[^)]*\.woff\) format\("woff"\)##g; s#,url\(fonts/[^)]*\.ttf\) format\("truetype"\)##g' \
    "$K/dist/katex.min.css" > "$OUT/katex.css"
cp "$K"/dist/fonts/*.woff2 "$OUT/fonts/"
for pair in "preact:$P" "htm:$H" "marked:$M" "dompurify:$D" "highlight.js:$HL" "katex:$K"; do
    name=${pair%%:*} dir=${pair#*:}
    for l in "$dir"/LICENSE*; do cp "$l" "$OUT/licenses/$name.$(basename "$l")"; done
done
# no source-map comments: the maps are not shipped
for f in "$OUT"/*.js; do sed -i -E '/^\/\/# sourceMappingURL=/d' "$f"; done
cat > "$OUT/VERSIONS" <<VERSIONS
preact $PREACT
htm $HTM
marked $MARKED
dompurify $DOMPURIFY
@highlightjs/cdn-assets $HIGHLIGHT
katex $KATEX
VERSIONS
du -sh "$OUT"
