#!/usr/bin/env bash
# engage's translations (its own Flask-Babel domain "engage", see engage/i18n.py).
#
#   scripts/translations.sh            extract the messages into engage/translations/engage.pot,
#                                      update every catalogue from it and compile the .mo files
#   scripts/translations.sh init LANG  start a catalogue for a new language, e.g. "fr"
#
# The demo CRM (engage/demo) is a host of its own with the default "messages" domain: its
# strings are extracted with babel-demo.cfg into engage/demo/translations, the same way.
#
# After an update, translate the new or changed (fuzzy) entries of
# engage/translations/<lang>/LC_MESSAGES/engage.po, run this again to compile, and commit the
# .po and the .mo: hosts that install the package get the compiled catalogue as it is.
# tests/test_translations.py fails while the .pot, the .po files and the .mo files disagree.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/pybabel ]; then
  PYBABEL=${PYBABEL:-.venv/bin/pybabel}
else
  PYBABEL=${PYBABEL:-pybabel}
fi
DIR=engage/translations
POT=$DIR/engage.pot

# babel.cfg names the keywords per file type; -k repeats them for Babel releases that do not
# read keywords from the mapping file. The input is the package folder (babel.cfg's patterns
# are relative to it).
"$PYBABEL" extract -F babel.cfg -k lazy_gettext -k _n -k _e -k ngettext_e:1,2 \
  --add-comments=TRANSLATORS: --sort-by-file --project=engage --copyright-holder=engage \
  -o "$POT" engage

if [ "${1:-}" = init ]; then
  "$PYBABEL" init -D engage -i "$POT" -d "$DIR" -l "${2:?usage: $0 init LANG}"
else
  "$PYBABEL" update -D engage -i "$POT" -d "$DIR"
fi
"$PYBABEL" compile -D engage -d "$DIR" --statistics

DEMO=engage/demo/translations
"$PYBABEL" extract -F babel-demo.cfg -k _l --sort-by-file --project="engage demo CRM" \
  --copyright-holder=engage -o "$DEMO/messages.pot" engage/demo
if [ "${1:-}" = init ]; then
  "$PYBABEL" init -D messages -i "$DEMO/messages.pot" -d "$DEMO" -l "$2"
else
  "$PYBABEL" update -D messages -i "$DEMO/messages.pot" -d "$DEMO"
fi
"$PYBABEL" compile -D messages -d "$DEMO" --statistics
