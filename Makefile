# Everything installs into .venv in the repository root. Two commands matter (README "Quick start"):
#   make demo   set up and run the main job on its built-in default
#   make test   set up and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# CPU torch must come first: an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup setup-test demo test check figures figures-quick bench clean fonts

# The emoji data set's second font (Debian fonts-noto-color-emoji): runs ask for it by default and stop without it.
NOTO := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.full: pyproject.toml | $(BIN)/python
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[empirical,test]'
	# only for the CLIP BPE file it ships (empirical/pretrained.py); its torchvision requirement must not come along
	$(PIP) install --no-deps clip-anytorch==2.6.0
	touch $@

setup: $(VENV)/.core
setup-test: $(VENV)/.full fonts

# Installs the font with apt-get when it can (root on Debian/Ubuntu), else says how and stops.
fonts:
	@[ -f $(NOTO) ] || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-noto-color-emoji; \
	else echo "make: the emoji data set needs Noto Color Emoji at $(NOTO): sudo apt-get install fonts-noto-color-emoji" >&2; exit 1; fi; }

# The main job: the C_P = 1..500 sweep on the default regime (summary on stdout, plot in results/demo/).
demo: $(VENV)/.core
	$(BIN)/python -m simulate.sweep --concepts 1..500 --out results/demo

check: $(VENV)/.core
	$(BIN)/python -m theory.check

# Every figure and table of the paper from results/ (paper_figures/out/figures.md); -quick: smallest presets.
figures: $(VENV)/.full fonts
	$(BIN)/python -m paper_figures all

figures-quick: $(VENV)/.full fonts
	$(BIN)/python -m paper_figures all --quick

# pytest exit 5 means "no tests collected": a suite that ran nothing must not look green.
test: $(VENV)/.full fonts
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

bench: $(VENV)/.full
	$(BIN)/python bench/ad.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
