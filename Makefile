# lostd - plain GNU make. `make` builds build/lostd, `make test` runs every
# test, `make SAN=address|thread ...` builds the same into build-$(SAN)/.

# Layers (STYLE.md): server -> lost -> core. core/ and lost/ are static
# libraries compiled with only include/ (and their own libraries' flags) on
# the include path, so a server header cannot be reached from them; `make
# check-layers` (a prerequisite of both libraries) also refuses a lost/
# header in core/, a folder's *_impl.h used from another folder, and the
# server's libraries in core/ or lost/. Each test and fuzzer links the
# smallest set: core, core + lost, or everything (tests/layer.sh decides from
# its includes). A new .c file in a folder joins its layer by itself; a new
# library goes into the PKGS_* list of the lowest layer that uses it.
PKGS_CORE   := openblas libjpeg spng jansson
PKGS_LOST   := $(PKGS_CORE) expat yajl
PKGS_SERVER := $(PKGS_LOST) libmicrohttpd libcurl libcrypto
CC      ?= cc
SAN     ?=
BUILD   := build$(if $(SAN),-$(SAN))

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -MMD -MP -pthread
# The one version: git's description of the checkout, else the release below.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.2.0)
CFLAGS_CORE   := $(shell pkg-config --cflags $(PKGS_CORE))
CFLAGS_LOST   := $(shell pkg-config --cflags $(PKGS_LOST))
CFLAGS_SERVER := $(shell pkg-config --cflags $(PKGS_SERVER)) -DLOSTD_VERSION='"$(VERSION)"'
LIBS_CORE   := $(shell pkg-config --libs $(PKGS_CORE)) -lm -pthread
LIBS_LOST   := $(shell pkg-config --libs $(PKGS_LOST)) -lm -pthread
LIBS_SERVER := $(shell pkg-config --libs $(PKGS_SERVER)) -lm -pthread

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
CORE_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(CORE_SRC))
LOST_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(LOST_SRC))
SERVER_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(SERVER_SRC))
LIBCORE    := $(BUILD)/libcore.a
LIBLOST    := $(BUILD)/liblost.a
MAIN_OBJ   := $(BUILD)/server/main.o
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_BIN   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
# What each layer's programs link: objects, then libraries.
LINK_CORE   := $(LIBCORE)
LINK_LOST   := $(LIBLOST) $(LIBCORE)
LINK_SERVER := $(SERVER_OBJ) $(LIBLOST) $(LIBCORE)
# The layer of a test or fuzz source, from its includes.
layer_of = $(shell bash tests/layer.sh $(1))

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

$(BUILD)/lostd: $(MAIN_OBJ) $(LINK_SERVER)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_SERVER)

$(LIBCORE): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(LIBLOST): $(LOST_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/core/%.o: core/%.c | check-layers
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_CORE) -c -o $@ $<
$(BUILD)/lost/%.o: lost/%.c | check-layers
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_LOST) -c -o $@ $<
$(BUILD)/server/%.o: server/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_SERVER) -c -o $@ $<
$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_SERVER) -c -o $@ $<

# Each test links its layer: core, lost or server (tests/layer.sh).
define test_rule
$(BUILD)/tests/$(1): $(BUILD)/tests/$(1).o $$(LINK_$(2))
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LIBS_$(2))
endef
$(foreach t,$(TEST_SRC),$(eval $(call test_rule,$(basename $(notdir $(t))),$(call layer_of,$(t)))))

# core/ and lost/ reach no server header (not on their include path) and,
# checked here: core/ includes no lost/ header, nobody includes another
# folder's *_impl.h or climbs out with "../", and neither uses the server's
# libraries (HTTP, downloads, hashing).
LOST_HDRS := $(filter $(notdir $(wildcard include/*.h)),$(patsubst %.c,%.h,$(notdir $(LOST_SRC))))
.PHONY: check-layers
check-layers:
	@bad=$$(grep -nE '#include "($(subst $(eval) ,|,$(LOST_HDRS)))"' core/*.c core/*.h 2>/dev/null; \
	  grep -nE '#include "\.\./' core/*.[ch] lost/*.[ch] server/*.[ch] 2>/dev/null; \
	  grep -nE '#include <(microhttpd|curl/|openssl/)' core/*.[ch] lost/*.[ch] 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "layering violated (STYLE.md: server -> lost -> core):"; \
	  echo "$$bad"; exit 1; fi

# Unit, golden and end-to-end tests; ends with "N passed, N failed".
test: $(BUILD)/lostd $(TEST_BIN)
	@BUILD=$(BUILD) LOSTD_SAN=$(SAN) bash tests/run.sh

# The daemon on 127.0.0.1:8080 with its default model.
run: $(BUILD)/lostd
	./$(BUILD)/lostd serve --host 127.0.0.1 --port 8080

bench: $(BUILD)/lostd $(BUILD)/bench/tokencut_bench
	@BUILD=$(BUILD) bash tests/bench.sh

# The TokenCut solver alone (bench/tokencut_bench.c), for make bench.
$(BUILD)/bench/tokencut_bench: bench/tokencut_bench.c $(LINK_LOST)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_LOST) -o $@ $< $(LINK_LOST) $(LIBS_LOST)

# The container image (docker/Dockerfile, README "Deploy"). Phony: docker/ is
# also a folder. `make image`: the same image without Docker or a registry,
# as root (buildah on a debootstrapped Debian 12 base, docker/buildah.sh).
.PHONY: docker image
docker:
	docker build -f docker/Dockerfile -t lostd .
image:
	bash docker/buildah.sh image lostd

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
define fuzz_rule
build-fuzz/tests/fuzz/$(1): tests/fuzz/$(1).c $$(LINK_$(2))
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(CFLAGS_SERVER) -fsanitize=fuzzer -o $$@ $$< $$(LINK_$(2)) $$(LIBS_$(2))
endef
$(foreach t,$(wildcard tests/fuzz/fuzz_*.c),$(eval $(call fuzz_rule,$(basename $(notdir $(t))),$(call layer_of,$(t)))))
soak: $(BUILD)/lostd
	@BUILD=$(BUILD) bash tests/soak.sh
