# The two commands of the README, plus the pieces they are made of.
.PHONY: setup demo test test-unit bench stack-up stack-down clean

ARGS ?=

setup:
	@scripts/setup.sh

demo: setup
	uv run jointwatch demo $(ARGS)

test: setup
	uv run pytest $(ARGS)

test-unit: setup
	uv run pytest tests/unit $(ARGS)

bench: setup
	uv run python -m bench.pipeline_bench $(ARGS)

stack-up: setup
	uv run jointwatch stack up

stack-down:
	uv run jointwatch stack down

clean:
	-uv run jointwatch stack down
	rm -rf .state target
