#!/usr/bin/env bash
# The quickstart: data report → fine-tune the embedded encoder → evaluate → register → alias → predict.
# Runs on the sample finance-tweet data shipped in the package; a few minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=src/tailor/sample_data
OUT=${DEMO_OUT:-demo-output}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Check the data (validation, cleaning, label balance, lengths, likely label errors, PII, leakage)"
tailor data check "$DATA/finance_sentiment_train.csv" --eval-file "$DATA/finance_sentiment_test.csv" \
  --report "$OUT/data_report.html"

step "2. Fine-tune all-MiniLM-L6-v2 (method auto), evaluate on the held-out file, register"
tailor train "$DATA/finance_sentiment_train.csv" --eval-file "$DATA/finance_sentiment_test.csv" \
  --name finance-sentiment

step "3. Evaluate the registered version again, with an HTML report"
tailor eval finance-sentiment@latest "$DATA/finance_sentiment_test.csv" --report "$OUT/eval_report.html"

step "4. Promote it and predict"
tailor models alias finance-sentiment@latest production
tailor predict finance-sentiment@production \
  '$AAPL beats estimates, shares jump 6% after hours' \
  'Regional bank stocks slide as deposit outflows accelerate' \
  'Fed minutes due at 2pm ET'

step "5. The registry"
tailor models list
tailor models show finance-sentiment@production

step "6. The web console: a key for the tenant the CLI works in (\"default\")"
secret() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["key"]["secret"] if "key" in d else d["secret"])'; }
KEY=$( (tailor tenants create default --json 2>/dev/null || tailor keys create default --name console --scopes admin --json) | secret)
printf 'Run `tailor serve`, open http://127.0.0.1:8000/console and sign in with this key (shown once):\n  %s\n' "$KEY"

printf '\nReports: %s/data_report.html, %s/eval_report.html\n' "$OUT" "$OUT"
