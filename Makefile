# `make run`: set up and run the default pipeline. `make test`: set up and run every test tier.
.PHONY: setup run test lint

setup: .venv/.installed

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

run: setup
	.venv/bin/snakemake --cores 2

test: setup lint
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/snakemake --lint
	.venv/bin/snakefmt --check Snakefile workflow/rules
