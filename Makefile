# Thin driver over CMake. `make demo` and `make test` are the README's two commands.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps configure build test demo bench fuzz check-hard clean format

all: build

$(DEPS_STAMP): scripts/install-deps.sh
	@bash scripts/install-deps.sh
	@mkdir -p $(BUILD) && touch $@

deps: $(DEPS_STAMP)

configure: $(DEPS_STAMP)
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Under CI=true (as .ci/run runs it) the reliability suite runs too: CI runs exactly `make test`.
# There a step starts only if it can end within CHECK_HARD_BUDGET_MIN (60) minutes of CHECK_HARD_T0
# (set by .ci/run, else now): CI's target is 60, its limit 90 (scripts/check_hard.sh reports any
# step left out).
CHECK_HARD_T0 ?= $(shell date +%s)
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@if [ "$$CI" = "true" ] || [ -n "$$CHECK_HARD" ]; then \
	  CHECK_HARD_T0=$(CHECK_HARD_T0) \
	  CHECK_HARD_BUDGET_MIN=$${CHECK_HARD_BUDGET_MIN:-$$([ "$$CI" = true ] && echo 60 || echo 0)} \
	  $(MAKE) --no-print-directory check-hard; fi

check-hard: build
	@bash scripts/check_hard.sh $(BUILD)

fuzz: $(DEPS_STAMP)
	@bash fuzz/run.sh $(CURDIR)/$(BUILD)-fuzz $${FUZZ_SECONDS:-60}

demo: build
	@bash scripts/demo.sh $(BUILD)

bench: $(DEPS_STAMP)
	@cmake -S . -B $(BUILD)-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DVGGCACHE_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BUILD)-bench -j $(JOBS) --target bench_tools
	@bash bench/run.sh $(BUILD)-bench

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-bench $(BUILD)-fuzz build-asan build-tsan build-tsan-deps
