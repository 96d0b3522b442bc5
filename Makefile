# ssepush: plain GNU Makefile. `make`, `make run`, `make test`, `make bench`, `make clean`.
# Knobs: SANITIZER=address (ASan+UBSan), WERROR=1, V=1, PREFIX, DESTDIR.

PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc
PKGS := libmicrohttpd jansson

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wwrite-strings -Wundef
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Iinclude -Ibroker
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifeq ($(SANITIZER),address)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else ifneq ($(SANITIZER),)
CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZER)
endif

ifneq ($(V),1)
Q := @
endif

# pkg-config only when building (so `make clean` works before the packages exist).
ifneq ($(filter-out clean deps,$(or $(MAKECMDGOALS),all)),)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
endif

COMMON_SRC := $(wildcard common/*.c)
BROKER_SRC := $(wildcard broker/*.c)
LEAF_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/broker/history.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all clean deps test-deps bench-deps run test unit functional install bench
all: $(BUILD)/ssepush-broker

# Rebuild everything when the flags change (e.g. SANITIZER on or off).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS)' > $@
FORCE:

$(BUILD)/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/ssepush-broker: $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BROKER_SRC:%.c=$(BUILD)/%.o)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -pthread $^ $(PKG_LIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(LEAF_OBJ) $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $< $(LEAF_OBJ) -lcmocka -o $@

deps:
	@packaging/install-deps.sh build

bench-deps:
	@packaging/install-deps.sh bench

test-deps:
	@packaging/install-deps.sh test

run: deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/ssepush-broker

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

functional: all
	SSEPUSH_BROKER=$(abspath $(BUILD)/ssepush-broker) tests/functional/run.sh

test: test-deps
	@$(MAKE) --no-print-directory all unit
	tests/packaging.sh $(BUILD)/ssepush-broker
	@$(MAKE) --no-print-directory functional

# The load generator: libc only, same warnings as the daemons.
$(BUILD)/loadgen: tests/bench/loadgen.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $< -o $@

# ssepush against nginx+nchan, scenario by scenario (BENCH_QUICK=1: under 3 minutes).
# Not part of `make test`: it loads both cores for minutes.
bench: bench-deps
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen
	BUILD=$(abspath $(BUILD)) tests/bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/ssepush
	install -m 755 $(BUILD)/ssepush-broker $(DESTDIR)$(PREFIX)/bin/
	install -m 644 packaging/ssepush-broker.conf $(DESTDIR)/etc/ssepush/

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
