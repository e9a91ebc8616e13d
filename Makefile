# One command each: run, test, lint, bench, eval. Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TCM    := $(VENV)/bin/tcm
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow test-browser lint bench eval train clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the HTTP API (REST, CDS Hooks) on loopback with the built-in knowledge base and an embedded
# SQLite database under var/; the first start prints a development token (see README).
run: install
	$(TCM) kb validate
	$(TCM) serve --dev --host 127.0.0.1 --port 8000

test: install
	$(PY) -m pytest -q -m "not slow and not browser" -p no:cacheprovider

# The curator's web page in headless Chromium (Playwright for Python driving Debian's chromium package, installed
# here when missing and we may: root, or sudo; with a CJK font for readable screenshots in artifacts/screenshots/).
test-browser: install
	command -v chromium >/dev/null 2>&1 && fc-list :lang=zh | grep -q . || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; }
	command -v chromium >/dev/null 2>&1 || { echo "test-browser: Debian's chromium is needed (apt-get install chromium)"; exit 1; }
	$(PIP) install -q -e '.[dev,browser]'
	$(PY) -m pytest -q -m browser -p no:cacheprovider tests/browser

test-slow: install
	$(PY) -m pytest -q -m slow -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check kb cds api models training eval tests
	$(VENV)/bin/ruff format --check kb cds api models training eval tests
	$(VENV)/bin/mypy

bench: install
	$(PY) -m eval.bench

train: install
	$(TCM) train herb-rec --out artifacts/models/herb-rec
	$(TCM) train case-classify --out artifacts/models/case-classify --allow-identifiers

# Full evaluation into artifacts/reports/report.md: trains the models and builds the case base first when absent
# (40-70 min on 2 cores), then the syndrome dev set (with the models), similar-case retrieval (TF-IDF vs a BERT
# encoder trained 15 min vs random neighbours), the vector index at 10k-1M real-like vectors, and the model report.
DATA ?= $(if $(TCM_DATA_DIR),$(TCM_DATA_DIR),../shared/data)
eval: install
	mkdir -p artifacts/reports
	test -f artifacts/models/herb-rec/smgcn/model_card.json || $(TCM) train herb-rec --data $(DATA) --out artifacts/models/herb-rec
	test -f artifacts/models/case-classify/model_card.json || $(TCM) train case-classify --data $(DATA) --out artifacts/models/case-classify --allow-identifiers
	test -f artifacts/models/case-classify-char-cnn/model_card.json || $(TCM) train case-classify --data $(DATA) --out artifacts/models/case-classify-char-cnn --config eval/configs/case-classify-char-cnn.json --allow-identifiers
	test -f artifacts/cases/cases.sqlite || $(TCM) cases build --data $(DATA) --out artifacts/cases
	$(PY) -m eval.syndromes --models artifacts --json > artifacts/reports/syndromes.json.tmp && mv artifacts/reports/syndromes.json.tmp artifacts/reports/syndromes.json
	$(PY) -m eval.retrieval --data $(DATA) --bert-budget 900 --out artifacts/reports/retrieval.json > /dev/null
	$(PY) -m bench.vectors --like artifacts/cases --casebase artifacts/cases --json artifacts/reports/vectors.json
	$(PY) -m eval.report --data $(DATA)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache *.egg-info
