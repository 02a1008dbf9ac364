# pilot — one GNU Makefile for every program, the tests and the fuzzers.
#   make                 build every program that exists (release: -O2)
#   make check           install missing Debian packages, build the ASan+UBSan test
#                        tree, run unit, fuzz-smoke and integration tests
#   make fuzz            build the libFuzzer targets and run each FUZZ_SECONDS (60)
#   make install PREFIX=/usr/local DESTDIR=
#   V=1                  show the commands
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60

# The archive rules below come first: without this, a plain `make` built one archive.
.DEFAULT_GOAL := all

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2)
endif

PKGS      := libsodium json-c

WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
BASE       = -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -I. $(ALL_CFLAGS)
REL_FLAGS ?= -O2 -g
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FZ_FLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -DPILOT_FUZZING

# ---- what exists -----------------------------------------------------------
# SRC_FILTER (e.g. "lib/addr.c lib/proto.c") restricts the archives to those files while
# a folder is under construction; empty = everything.
SRC_FILTER ?=
dir_srcs = $(filter-out $(1)/main.c,$(if $(SRC_FILTER),$(filter $(SRC_FILTER),$(wildcard $(1)/*.c)),$(wildcard $(1)/*.c)))
# Each folder becomes one archive; a program is its folder's main.c plus archives.
# A folder's main.c is the program entry point and is kept out of the archive.
LIB_DIRS := lib
ifneq ($(wildcard tun/*.c),)
LIB_DIRS += tun
endif

PROGRAMS :=
ifneq ($(wildcard daemon/main.c),)
PROGRAMS += pilotd
pilotd_DIR  := daemon
pilotd_DEPS := daemon tun lib
endif
ifneq ($(wildcard ctl/main.c),)
PROGRAMS += pilotctl
pilotctl_DIR  := ctl
pilotctl_DEPS := ctl lib
endif
ifneq ($(wildcard rendezvous/main.c),)
PROGRAMS += pilot-rendezvous
pilot-rendezvous_DIR  := rendezvous
pilot-rendezvous_DEPS := rendezvous lib
endif
ifneq ($(wildcard nameserver/main.c),)
PROGRAMS += pilot-nameserver
pilot-nameserver_DIR  := nameserver
pilot-nameserver_DEPS := nameserver lib
endif

# Every folder with library code gets an archive, even before its program exists,
# so unit tests can exercise it.
ARCHIVE_DIRS := $(sort $(LIB_DIRS) $(foreach d,daemon ctl rendezvous nameserver,$(if $(call dir_srcs,$(d)),$(d))))
# Libraries each folder's code needs (programs and tests link what their folders need).
tun_PKGS        := libnl-3.0 libnl-route-3.0
daemon_PKGS     := libnl-3.0 libnl-route-3.0 libwebsockets openssl
rendezvous_PKGS := sqlite3 libwebsockets openssl
ALL_PKGS := $(PKGS) $(sort $(foreach d,$(ARCHIVE_DIRS),$($(d)_PKGS)))
ALL_CFLAGS := $(shell pkg-config --cflags $(ALL_PKGS) 2>/dev/null)
ALL_LIBS := $(shell pkg-config --libs $(ALL_PKGS) 2>/dev/null) -lpthread -lm

# $(1)=tree (rel|san|fz) → archive path for folder $(2)
archive = $(BUILD)/$(1)/lib$(2).a

# ---- object rules ----------------------------------------------------------
$(BUILD)/rel/%.o: %.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE) $(REL_FLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c
	$(call msg,CC-SAN,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE) $(SAN_FLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/fz/%.o: %.c
	$(call msg,CC-FZ,$<)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(BASE) $(FZ_FLAGS) -c $< -o $@

define ARCHIVE_RULES
$(call archive,$(1),$(2)): $(patsubst %.c,$(BUILD)/$(1)/%.o,$(call dir_srcs,$(2)))
	$$(call msg,AR,$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach t,rel san fz,$(foreach d,$(ARCHIVE_DIRS),$(eval $(call ARCHIVE_RULES,$(t),$(d)))))

# ---- programs ----------------------------------------------------------------
define PROGRAM_RULES
$(BUILD)/$(1)/bin/$(2): $(BUILD)/$(1)/$($(2)_DIR)/main.o $(foreach d,$(filter $(ARCHIVE_DIRS),$($(2)_DEPS)),$(call archive,$(1),$(d)))
	$$(call msg,LD,$$@)
	@mkdir -p $$(dir $$@)
	$(Q)$(CC) $(if $(filter san,$(1)),$(SAN_FLAGS)) $$^ $(ALL_LIBS) $(LDFLAGS) -o $$@
endef
$(foreach t,rel san,$(foreach p,$(PROGRAMS),$(eval $(call PROGRAM_RULES,$(t),$(p)))))

REL_BINS := $(PROGRAMS:%=$(BUILD)/rel/bin/%)
SAN_BINS := $(PROGRAMS:%=$(BUILD)/san/bin/%)

.PHONY: all check test-build fuzz fuzz-build install clean deps demo
# Keep objects that only feed a test or fuzz binary (no rebuild every time).
.SECONDARY:
all: $(REL_BINS) $(call archive,rel,lib)

# ---- unit tests (cmocka, ASan+UBSan) ------------------------------------------
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(patsubst tests/unit/%.c,$(BUILD)/san/tests/%,$(TEST_SRCS))
# Tests may exercise any folder's internals, so they link every archive.
TEST_ARCHIVES := $(foreach d,$(filter-out lib,$(ARCHIVE_DIRS)) lib,$(call archive,san,$(d)))

$(BUILD)/san/tests/%: $(BUILD)/san/tests/unit/%.o $(TEST_ARCHIVES)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(SAN_FLAGS) $< -Wl,--start-group $(TEST_ARCHIVES) -Wl,--end-group $(ALL_LIBS) -lcmocka -o $@

# ---- fuzzers (clang libFuzzer + ASan + UBSan) ---------------------------------
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fz/fuzz/%,$(FUZZ_SRCS))
FUZZ_ARCHIVES := $(foreach d,$(filter-out lib,$(ARCHIVE_DIRS)) lib,$(call archive,fz,$(d)))

$(BUILD)/fz/fuzz/%: $(BUILD)/fz/tests/fuzz/%.o $(FUZZ_ARCHIVES)
	$(call msg,LD-FZ,$@)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $< -Wl,--start-group $(FUZZ_ARCHIVES) -Wl,--end-group $(ALL_LIBS) -o $@

# Release programs too: the valgrind runs use them (ASan and valgrind do not mix).
# With SRC_FILTER (a folder under construction) programs may not link: skip them.
test-build: $(if $(SRC_FILTER),,$(SAN_BINS) $(REL_BINS)) $(TEST_BINS) $(FUZZ_BINS)
fuzz-build: $(FUZZ_BINS)

deps:
	@scripts/install-deps.sh

# Two nodes in namespaces, curl http://bravo.pilot/ over the TUN (needs root).
demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# The recursive make re-reads pkg-config once the packages are there.
check: deps
	@$(MAKE) --no-print-directory test-build
	@BUILD=$(BUILD) tests/run.sh

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# ---- install ----------------------------------------------------------------
SBIN_PROGS := pilotd pilot-rendezvous pilot-nameserver
install: all
	@for p in $(PROGRAMS); do \
		case " $(SBIN_PROGS) " in *" $$p "*) d=sbin ;; *) d=bin ;; esac; \
		install -D -m 0755 $(BUILD)/rel/bin/$$p $(DESTDIR)$(PREFIX)/$$d/$$p || exit 1; \
	done
	@for m in $(wildcard man/*.[1-8]); do \
		s=$${m##*.}; install -D -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/$${m##*/} || exit 1; \
	done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- tools: benchmark load generators (release flags, linked with lib only) ----
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/rel/bin/%,$(TOOL_SRCS))

$(TOOL_BINS): $(BUILD)/rel/bin/%: $(BUILD)/rel/tests/tools/%.o $(call archive,rel,lib)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $^ $(ALL_LIBS) $(LDFLAGS) -o $@

.PHONY: tools
tools: $(TOOL_BINS)
