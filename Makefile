# lostd - plain GNU make. `make` builds build/lostd, `make test` runs every
# test, `make SAN=address|thread ...` builds the same into build-$(SAN)/.

PKGS    := openblas jansson libmicrohttpd libjpeg spng expat libcurl libcrypto
CC      ?= cc
SAN     ?=
BUILD   := build$(if $(SAN),-$(SAN))

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -MMD -MP -pthread
CFLAGS  += $(shell pkg-config --cflags $(PKGS))
# The one version: git's description of the checkout, else the release below.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.2.0)
CFLAGS  += -DLOSTD_VERSION='"$(VERSION)"'
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lm -pthread

ifeq ($(SAN),address)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SAN),thread)
CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif

CORE_SRC   := $(wildcard core/*.c)
LOST_SRC   := $(wildcard lost/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
LIB_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(CORE_SRC) $(LOST_SRC) $(SERVER_SRC))
MAIN_OBJ   := $(BUILD)/server/main.o
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_BIN   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

.PHONY: all test run bench clean
# Keep the test objects (they are intermediates of a chained rule), and never
# leave a half-written target behind a failed command.
.SECONDARY:
.DELETE_ON_ERROR:
all: $(BUILD)/lostd

# The files that print the version are rebuilt when it changes (the stamp
# is rewritten only then).
VERSION_STAMP := $(BUILD)/version.stamp
$(shell mkdir -p $(BUILD); echo '$(VERSION)' | cmp -s - $(VERSION_STAMP) 2>/dev/null || \
        echo '$(VERSION)' >$(VERSION_STAMP))
$(patsubst %,$(BUILD)/server/%.o,main http_get hub openapi): $(VERSION_STAMP)

$(BUILD)/lostd: $(LIB_OBJ) $(MAIN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit, golden and end-to-end tests; ends with "N passed, N failed".
test: $(BUILD)/lostd $(TEST_BIN)
	@BUILD=$(BUILD) LOSTD_SAN=$(SAN) bash tests/run.sh

# The daemon on 127.0.0.1:8080 with its default model.
run: $(BUILD)/lostd
	./$(BUILD)/lostd serve --host 127.0.0.1 --port 8080

bench: $(BUILD)/lostd
	@BUILD=$(BUILD) bash tests/bench.sh

# The container image (docker/Dockerfile, README "Deploy"). Phony: docker/ is
# also a folder.
.PHONY: docker
docker:
	docker build -f docker/Dockerfile -t lostd .

clean:
	rm -rf build build-address build-thread build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Fuzzing: `make fuzz [FUZZ_SECONDS=N]` builds every tests/fuzz/fuzz_*.c with
# clang, libFuzzer, ASan and UBSan into build-fuzz/ and runs each for N
# seconds from its seed corpus (tests/fuzz/run.sh). Soak: `make soak` puts a
# bounded loopback load on the daemon and reports throughput and latency.
FUZZ_SECONDS ?= 30
FUZZ_BIN := $(patsubst tests/%.c,build-fuzz/tests/%,$(wildcard tests/fuzz/fuzz_*.c))
ifeq ($(SAN),fuzz)
CC      := clang
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
CFLAGS  += -fno-sanitize-recover=undefined -Wno-error
# Warnings stay warnings: the tree is kept -Werror clean for gcc, not clang.
# core/kern.c picks AVX-512 with GCC's target pragmas, which clang 14 does not
# read: cc builds it here, uninstrumented (it parses nothing from outside).
$(BUILD)/core/kern.o: CC := cc
$(BUILD)/core/kern.o: CFLAGS := $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS))
endif
.PHONY: fuzz fuzz-build soak
fuzz:
	$(MAKE) SAN=fuzz fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh
fuzz-build: $(FUZZ_BIN)
build-fuzz/tests/fuzz/%: tests/fuzz/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB_OBJ) $(LDLIBS)
soak: $(BUILD)/lostd
	@BUILD=$(BUILD) bash tests/soak.sh
