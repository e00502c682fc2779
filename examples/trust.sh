#!/usr/bin/env bash
# The trust walk (issue 14): explain a prediction, a bias report on a slice column, the model card, a release
# gate that refuses version 1 and lets the fixed version 2 through, the master key rotated with nothing lost,
# and the audit chain verified. On the bank-assistant intents shipped in the package (CLINC150, CC BY 3.0);
# method head, so a minute or two on a 2-core CPU. Everything happens in a fresh TAILOR_HOME under a temporary
# folder (TRUST_WORK=DIR keeps it in DIR instead), so your own registry is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=src/tailor/sample_data
if [[ -n "${TRUST_WORK:-}" ]]; then
  WORK=$TRUST_WORK; mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/tailor-trust.XXXXXX")
fi
export TAILOR_HOME=$WORK/home
unset TAILOR_DATABASE_URL TAILOR_MASTER_KEY TAILOR_MASTER_KEY_FILE TAILOR_NEW_MASTER_KEY
START=$SECONDS
SERVER_PID=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
stop_server() {
  [[ -n "$SERVER_PID" ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
cleanup() { stop_server; [[ -n "${TRUST_WORK:-}" ]] || rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
start_server() {  # the API only (no job workers), in the background, until /health answers
  tailor serve --no-workers --port "$PORT" >>"$WORK/serve.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 150); do
    curl -sf "$URL/health" >/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 5 "$WORK/serve.log"; return 1; }
    sleep 0.2
  done
  echo "the server did not answer in 30 s" >&2; return 1
}
classify() {  # the API's answer (label and score) for three test texts, with the inputs stored (sealed)
  curl -sf "$URL/v1/classifications" -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
    -d '{"model": "bank-intents@production", "store": true, "input": ["i lost my credit card, what do i do",
         "please transfer $200 from checking to savings", "i will be in japan next week, let my bank know"]}' \
    | python3 -c 'import json,sys; [print("%s\t%.4f" % (p["label"], p["score"])) for p in json.load(sys.stdin)["data"]]'
}

step "0. A fresh TAILOR_HOME ($TAILOR_HOME) and a master key: encryption at rest on from the start"
tailor keys new-master --out "$WORK/master-1.key"
export TAILOR_MASTER_KEY_FILE=$WORK/master-1.key

# Both versions train without the label-name prior (--label-prior 0): with it, the intents' names alone
# carry the pilot's credit-card intents (largest slice gap 0.025), and the walk would have no weak version.
step "1. Train bank-intents:1 on the pilot file (only 2 questions per credit-card intent), method head"
tailor train "$DATA/bank_intents_pilot.csv" --eval-file "$DATA/bank_intents_test.csv" --name bank-intents \
  --method head --label-prior 0 >"$WORK/train-1.log" 2>&1 || { tail -n 20 "$WORK/train-1.log"; exit 1; }
grep -E "^› test:|^registered" "$WORK/train-1.log"

step "2. Explain a prediction: each word's weight and its characters in the text"
tailor predict bank-intents:1 "my card was declined at the grocery store" --explain --json >"$WORK/explain.json"
python3 - "$WORK/explain.json" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1]))["predictions"]:
    print(f"{p['label']}  {p['score']:.3f}  {p['text']!r}")
    for t in sorted(p["explanation"], key=lambda t: -t["weight"]):
        print(f"  {t['weight']:+.4f}  {t['token']!r} at [{t['start']}:{t['end']}]")
PY

step "3. Bias report on the slice column 'domain', with a counterfactual check extended by your own terms"
cat >"$WORK/terms.json" <<'EOF'
{"destination": [["mexico", "japan"], ["cuba", "france"], ["brazil", "spain"], ["rome", "paris"]]}
EOF
tailor eval bank-intents:1 "$DATA/bank_intents_test.csv" --slice-col domain --counterfactual \
  --terms "$WORK/terms.json" >"$WORK/bias-1.txt"
grep -E "^(metric|accuracy|macro-F1) " "$WORK/bias-1.txt"
sed -n '/^slices of/,$p' "$WORK/bias-1.txt"

step "4. The model card of bank-intents:1 (its metadata and its slices section)"
tailor models show bank-intents:1 --card >"$WORK/card-1.md"
sed -n '1,17p' "$WORK/card-1.md"; echo "..."
sed -n '/^## Evaluation on slices/,/^Where the model/{/^Where the model/!p;}' "$WORK/card-1.md"

step "5. A release gate for tenant default: test accuracy >= 0.9 and largest slice gap <= 0.10"
tailor gate set default --min-accuracy 0.9 --max-slice-gap 0.1

step "6. Point bank-intents@production at version 1: refused by the gate"
if tailor models alias bank-intents:1 production; then
  echo "unexpected: the gate let version 1 through" >&2; exit 1
else
  echo "exit status $?"
fi

step "7. The fix: version 2 trained on the full file (10 questions per intent), its bias report"
tailor train "$DATA/bank_intents_train.csv" --eval-file "$DATA/bank_intents_test.csv" --name bank-intents \
  --method head --label-prior 0 >"$WORK/train-2.log" 2>&1 || { tail -n 20 "$WORK/train-2.log"; exit 1; }
grep -E "^› test:|^registered" "$WORK/train-2.log"
tailor eval bank-intents:2 "$DATA/bank_intents_test.csv" --slice-col domain --counterfactual \
  --terms "$WORK/terms.json" >"$WORK/bias-2.txt"
sed -n '/^slices of/,/^largest gap/p; /^counterfactual/p' "$WORK/bias-2.txt"

step "8. Point bank-intents@production at version 2: allowed"
tailor models alias bank-intents:2 production
tailor models aliases bank-intents

step "9. Serve it: upload the test file (sealed on disk), classify three texts with their inputs stored"
KEY=$(tailor tenants create default --json | json 'd["key"]["secret"]')
start_server
FILE_ID=$(curl -sf "$URL/v1/files" -H "Authorization: Bearer $KEY" -F purpose=fine-tune \
  -F file=@"$DATA/bank_intents_test.csv" | json 'd["id"]')
STORED=$(find "$TAILOR_HOME" -type f -name "$FILE_ID.csv")
echo "uploaded $FILE_ID; on disk (${STORED#"$WORK"/}) it starts with $(head -c 6 "$STORED")" \
  "and $(grep -ac "credit card" "$STORED" || true) of its lines with \"credit card\" can be read"
classify | tee "$WORK/predictions-before.txt"
stop_server

step "10. Rotate the master key: a new one, every tenant's data key re-wrapped under it"
tailor keys new-master --out "$WORK/master-2.key"
tailor keys rotate-master --new-key-file "$WORK/master-2.key"

step "11. The old master key is refused now"
status=0
timeout 60 tailor serve --no-workers --port "$PORT" 2>"$WORK/old-key.txt" || status=$?
if [[ $status -eq 0 || $status -eq 124 ]]; then
  echo "unexpected: the server started with the old key" >&2; exit 1
fi
echo "exit status $status: $(grep '^error' "$WORK/old-key.txt")"

step "12. Nothing lost: with the new key the file reads back byte for byte and the answers are the same"
export TAILOR_MASTER_KEY_FILE=$WORK/master-2.key
start_server
curl -sf "$URL/v1/files/$FILE_ID/content" -H "Authorization: Bearer $KEY" -o "$WORK/content.csv"
cmp "$DATA/bank_intents_test.csv" "$WORK/content.csv"  # exits the walk on any difference
echo "the file's content is identical to the upload"
classify | tee "$WORK/predictions-after.txt"
cmp "$WORK/predictions-before.txt" "$WORK/predictions-after.txt"
echo "the answers are identical"
stop_server

step "13. The audit log and its hash chain"
tailor audit list --limit 12
tailor audit verify

printf '\ntrust walk done in %ds\n' "$((SECONDS - START))"
