# Front door over CMake: `make`, `make run`, `make test`, `make bench`, `make deps`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CONFIG     ?= ./config.lua

# Debian 12 packages the build, the bot and the tests need.
DEB_PACKAGES = build-essential cmake pkg-config clang libclang-rt-14-dev lua5.4 liblua5.4-dev libuv1-dev \
  libwebsockets-dev libwebsockets-evlib-uv libcurl4-openssl-dev libsqlite3-dev zlib1g-dev \
  libcmocka-dev lua-cjson lua-busted lua-check python3 python3-aiohttp python3-pytest \
  python3-websockets openssl curl hyperfine

.PHONY: all build run test test-main test-asan fuzz-smoke bench deps check-deps clean

all: build

# Installs what is missing when root; otherwise prints the exact command and stops.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	  echo "missing Debian packages; as root run:"; echo "  apt-get install -y" $$missing; exit 1; \
	fi

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@if [ -z "$$DISCORD_TOKEN" ] && ! grep -q '^[^-]*token_file *= *"' $(CONFIG); then \
	  echo "no Discord token configured: starting the console transport"; \
	  exec $(BUILD)/claude-coordinator --config $(CONFIG) --console; \
	fi; \
	exec $(BUILD)/claude-coordinator --config $(CONFIG)

test: test-main test-asan fuzz-smoke

test-main: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The cmocka tests and busted specs again, under AddressSanitizer + UBSan.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L 'unit|spec'

# Short libFuzzer runs over tests/fuzz/*.c when clang is present (about 60 s each).
fuzz-smoke: deps
	@if command -v clang >/dev/null; then tests/fuzz/run-smoke $(FUZZ_BUILD); \
	else echo "clang not found: skipping the fuzz smoke run"; fi

bench: build
	bench/run-all $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
