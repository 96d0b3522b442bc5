# ssepush: plain GNU Makefile. `make`, `make run`, `make test`, `make bench`, `make clean`,
# `make install`, `make uninstall`, `make deb`, `make conf`.
# Knobs: SANITIZER=address (ASan+UBSan) or thread (TSan), WERROR=1, V=1, BUILD=dir,
# CFLAGS/CPPFLAGS/LDFLAGS (the project's flags are appended to them), and for install:
# PREFIX, SBINDIR, DATADIR, MANDIR, DOCDIR, SYSCONFDIR, SYSTEMDUNITDIR, DESTDIR.

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/ssepush
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BUILD ?= build
CC ?= cc
PKGS := libmicrohttpd jansson hiredis libevent libjwt libcurl libcrypto

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wwrite-strings -Wundef
# The user's CFLAGS, CPPFLAGS and LDFLAGS (from the command line or the environment, as
# dpkg-buildflags gives them) come first; the project's own flags are appended to them,
# never replaced (make CFLAGS=-O0 still builds with -std=c11, the warnings, -pthread
# and the include paths), as redis's FINAL_CFLAGS does.
CFLAGS ?= -O2 -g
SSEPUSH_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Iinclude -Ibroker -Ipusher
SSEPUSH_LDFLAGS :=
ifeq ($(WERROR),1)
SSEPUSH_CFLAGS += -Werror
endif
ifeq ($(SANITIZER),address)
SSEPUSH_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SSEPUSH_LDFLAGS += -fsanitize=address,undefined
else ifneq ($(SANITIZER),)
SSEPUSH_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
SSEPUSH_LDFLAGS += -fsanitize=$(SANITIZER)
endif
FINAL_CFLAGS = $(CPPFLAGS) $(CFLAGS) $(SSEPUSH_CFLAGS)
FINAL_LDFLAGS = $(LDFLAGS) $(SSEPUSH_LDFLAGS)

ifneq ($(V),1)
Q := @
endif

# pkg-config only when building (so `make clean` works before the packages exist).
ifneq ($(filter-out clean deps,$(or $(MAKECMDGOALS),all)),)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
JANSSON_LIBS := $(shell pkg-config --libs jansson 2>/dev/null)
PUSHER_LIBS := $(shell pkg-config --libs jansson hiredis libevent 2>/dev/null)
endif

COMMON_SRC := $(wildcard common/*.c)
BROKER_SRC := $(wildcard broker/*.c)
PUSHER_SRC := $(wildcard pusher/*.c)
LEAF_OBJ := $(filter-out $(BUILD)/common/redis_conn.o $(BUILD)/common/redis_sentinel.o,$(COMMON_SRC:%.c=$(BUILD)/%.o)) $(BUILD)/broker/history.o \
	$(BUILD)/broker/cidr.o $(BUILD)/pusher/notify.o $(BUILD)/pusher/coalesce.o $(BUILD)/pusher/jmap_states.o
# The broker's leaf modules, linked alone into the unit tests.
LEAF_OBJ += $(BUILD)/broker/event.o $(BUILD)/broker/wheel.o $(BUILD)/broker/direct.o \
	$(BUILD)/broker/jobq.o $(BUILD)/broker/jmap_ids.o
# Served by the broker (broker/static.c), embedded at build time by broker/www/embed.sh.
WWW := broker/www/ssepush.js broker/www/ssepush.mjs broker/www/demo.html broker/www/ssepush-sw.js
# Man pages, built from man/*.in by $(BUILD)/mangen, which links the directive tables.
MAN_SRC := $(wildcard man/*.in)
MAN_PAGES := $(MAN_SRC:man/%.in=$(BUILD)/man/%)
MANGEN_OBJ := $(BUILD)/man/mangen.o $(BUILD)/man/mangen_broker.o $(BUILD)/man/mangen_pusher.o \
	$(BUILD)/broker/options.o $(BUILD)/pusher/options.o
# Shipped by make install (and so by the .deb).
CONFS := packaging/ssepush-broker.conf packaging/ssepush-pusher.conf
UNITS := packaging/ssepush-broker.service packaging/ssepush-pusher.service
UNIT_SRC := $(wildcard tests/unit/test_*.c)
.SECONDARY: $(LEAF_OBJ)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all clean deps test-deps bench-deps deb-deps run test unit functional browser install uninstall \
	fuzz bench man conf deb
all: $(BUILD)/ssepush-broker $(BUILD)/ssepush-pusher $(MAN_PAGES)

# Rebuild everything when the flags change (e.g. SANITIZER on or off).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(FINAL_CFLAGS) $(PKG_CFLAGS) $(FINAL_LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(FINAL_CFLAGS) $(PKG_CFLAGS) $(FINAL_LDFLAGS)' > $@
FORCE:

$(BUILD)/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(FINAL_CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/www.c: broker/www/embed.sh $(WWW)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  EMBED   $(WWW)")
	$(Q)broker/www/embed.sh $@ $(WWW)

$(BUILD)/gen/www.o: $(BUILD)/gen/www.c $(BUILD)/.flags
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(FINAL_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/ssepush-broker: $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BROKER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/www.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) -pthread $^ $(PKG_LIBS) -o $@

$(BUILD)/ssepush-pusher: $(COMMON_SRC:%.c=$(BUILD)/%.o) $(PUSHER_SRC:%.c=$(BUILD)/%.o)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) $^ $(PUSHER_LIBS) -o $@

$(BUILD)/mangen: $(MANGEN_OBJ) $(LEAF_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) $^ $(JANSSON_LIBS) -o $@

$(BUILD)/man/ssepush-broker%: man/ssepush-broker%.in $(BUILD)/mangen
	@$(if $(Q),echo "  MAN     $@")
	$(Q)$(BUILD)/mangen broker <$< >$@.tmp && mv $@.tmp $@

$(BUILD)/man/ssepush-pusher%: man/ssepush-pusher%.in $(BUILD)/mangen
	@$(if $(Q),echo "  MAN     $@")
	$(Q)$(BUILD)/mangen pusher <$< >$@.tmp && mv $@.tmp $@

man: $(MAN_PAGES)

# Regenerates the shipped configs from the directive tables ("-h"), keeping each
# file's opening comment (up to its first blank line). tests/packaging.sh checks them.
conf: $(BUILD)/ssepush-broker $(BUILD)/ssepush-pusher
	@set -e; for d in broker pusher; do f=packaging/ssepush-$$d.conf; \
		{ sed '/^$$/q' $$f; $(BUILD)/ssepush-$$d -h | sed -n '/^# /,$$p'; } >$$f.tmp; mv $$f.tmp $$f; \
		echo "  GEN     $$f"; done

$(BUILD)/tests/%: tests/unit/%.c $(LEAF_OBJ) $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(FINAL_CFLAGS) $(PKG_CFLAGS) $(FINAL_LDFLAGS) $< $(LEAF_OBJ) -lcmocka $(JANSSON_LIBS) -o $@

# Web push's crypto (OpenSSL) and registration parsing: only their tests link them.
WEBPUSH_UNIT_OBJ := $(BUILD)/broker/webpush_crypto.o $(BUILD)/broker/webpush_reg.o
$(BUILD)/tests/test_webpush%: tests/unit/test_webpush%.c $(LEAF_OBJ) $(WEBPUSH_UNIT_OBJ) $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(FINAL_CFLAGS) $(PKG_CFLAGS) $(FINAL_LDFLAGS) $< $(LEAF_OBJ) $(WEBPUSH_UNIT_OBJ) \
		-lcmocka $(JANSSON_LIBS) $(shell pkg-config --libs libcrypto 2>/dev/null) -o $@

deps:
	@packaging/install-deps.sh build

bench-deps:
	@packaging/install-deps.sh bench

test-deps:
	@packaging/install-deps.sh test

deb-deps:
	@packaging/install-deps.sh deb

run: deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/ssepush-broker --demo on

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# libFuzzer targets (clang), one per parser a peer controls: notify datagrams, the
# request path and query, Last-Event-ID and Redis notifications, subscriber tokens,
# batch bodies, the config file, the SSE framing round trip (tests/fuzz/README.md).
# `make fuzz` (not part of `make test`) builds them all and runs each FUZZ_TIME seconds
# (FUZZ_TARGETS picks some); a corpus grows in $(BUILD)/fuzz/<target>/, seeded from
# tests/fuzz/corpus/<target>/ (notify: the Cyrus fixtures); what a run finds goes to
# $(BUILD)/fuzz/artifacts/<target>/. `make fuzz-smoke` (in `make test`: about 15 s of
# CPU, nearly all of it the clang build) runs each target once over its seeds only.
# The broker's objects (but main.c and shard.c), the common ones and the notify parser
# are built again with clang and the sanitizers into one archive, so that a target
# links only what its parser needs. clang and the rest: packaging/deps.list's [test] group.
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_TARGETS ?= notify request last_event_id token batch config sse jmap_id repoll
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ibroker -Ipusher $(FUZZ_SAN)
# WERROR=1 makes the fuzzers' own warnings errors; the project's files keep gcc's verdict
# (clang also warns where gcc does not).
FUZZ_WERROR := $(if $(filter 1,$(WERROR)),-Werror)
FUZZ_LIB_SRC := $(filter-out broker/main.c broker/shard.c,$(BROKER_SRC)) $(COMMON_SRC) \
	pusher/notify.c pusher/coalesce.c
FUZZ_LIB := $(FUZZ_DIR)/libssepush-fuzz.a
# OpenSSL only signs the tokens fuzz_token builds itself (the broker signs with libjwt).
FUZZ_LIBS = $(PKG_LIBS) $(shell pkg-config --libs libcrypto 2>/dev/null)
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
.SECONDARY: $(FUZZ_LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)

# Rebuild the objects when their flags change, the fuzzers also when WERROR does.
$(FUZZ_DIR)/.flags: FORCE
	@mkdir -p $(FUZZ_DIR)
	@echo '$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS)' | cmp -s - $@ || \
		echo '$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS)' > $@
$(FUZZ_DIR)/.ldflags: FORCE
	@mkdir -p $(FUZZ_DIR)
	@echo '$(FUZZ_WERROR) $(FUZZ_LIBS)' | cmp -s - $@ || echo '$(FUZZ_WERROR) $(FUZZ_LIBS)' > $@

$(FUZZ_DIR)/obj/%.o: %.c $(FUZZ_DIR)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB) $(FUZZ_DIR)/.flags $(FUZZ_DIR)/.ldflags
	@$(if $(Q),echo "  FUZZLD  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_WERROR) -fsanitize=fuzzer $(PKG_CFLAGS) \
		-MMD -MP -MT $@ -MF $@.d $< $(FUZZ_LIB) $(FUZZ_LIBS) -o $@

fuzz: $(FUZZ_BIN)
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_TIME) $(FUZZ_TARGETS)

.PHONY: fuzz-smoke
fuzz-smoke: $(FUZZ_BIN)
	tests/fuzz/run.sh --smoke $(FUZZ_DIR) 0 $(FUZZ_TARGETS)

functional: all
	SSEPUSH_BROKER=$(abspath $(BUILD)/ssepush-broker) SSEPUSH_PUSHER=$(abspath $(BUILD)/ssepush-pusher) \
		tests/functional/run.sh

browser: all
	SSEPUSH_BROKER=$(abspath $(BUILD)/ssepush-broker) tests/browser/run.sh

# tests/flags.sh and tests/deb.sh build without the sanitizer whatever SANITIZER says,
# so only the plain make test runs them (tests/deb.sh needs root and skips without it).
test: test-deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory fuzz-smoke
	tests/callgraph.sh $(BUILD)
	tests/packaging.sh $(BUILD)/ssepush-broker
	tests/man.sh $(BUILD)/man $(BUILD)/ssepush-broker
	+tests/install.sh $(BUILD)
ifeq ($(SANITIZER),)
	tests/flags.sh
	tests/deb.sh
else
	@echo "skip: tests/flags.sh and tests/deb.sh (they build without SANITIZER; make test without it runs them)"
endif
	@$(MAKE) --no-print-directory functional
	@$(MAKE) --no-print-directory browser

# The load generator: libc only, same warnings as the daemons.
$(BUILD)/loadgen: tests/bench/loadgen.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) $< -o $@

# ssepush against nginx+nchan, scenario by scenario (BENCH_QUICK=1: under 3 minutes).
# Not part of `make test`: it loads both cores for minutes.
bench: bench-deps
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen
	BUILD=$(abspath $(BUILD)) tests/bench/run.sh

# Installs under DESTDIR+PREFIX (binaries in SBINDIR); the systemd units get the
# installed paths. An existing config is never overwritten: when it differs from the
# shipped one, the new one goes beside it as NAME.dist.
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(DATADIR)/ssepush $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)/examples/nginx \
		$(DESTDIR)$(DOCDIR)/examples/cyrus $(DESTDIR)$(SYSCONFDIR)/ssepush
	install -m 755 $(BUILD)/ssepush-broker $(BUILD)/ssepush-pusher $(DESTDIR)$(SBINDIR)/
	install -m 644 $(WWW) $(DESTDIR)$(DATADIR)/ssepush/
	install -m 644 $(filter %.8,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(filter %.5,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man5/
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/
	install -m 644 packaging/nginx/*.conf $(DESTDIR)$(DOCDIR)/examples/nginx/
	@set -e; for f in $(UNITS) packaging/cyrus/cyrus.conf packaging/cyrus/imapd.conf packaging/cyrus/imapd-jmap.conf; do \
		case $$f in *.service) d=$(DESTDIR)$(SYSTEMDUNITDIR);; *) d=$(DESTDIR)$(DOCDIR)/examples/cyrus;; esac; \
		echo "sed (paths) $$f > $$d/$${f##*/}"; \
		sed -e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|/etc/ssepush/|$(SYSCONFDIR)/ssepush/|g' $$f >$$d/$${f##*/}; \
		chmod 644 $$d/$${f##*/}; done
	@set -e; for f in $(CONFS); do dst=$(DESTDIR)$(SYSCONFDIR)/ssepush/$${f##*/}; \
		if [ ! -e $$dst ]; then echo "install -m 644 $$f $$dst"; install -m 644 $$f $$dst; \
		elif cmp -s $$f $$dst; then echo "$$dst: unchanged"; \
		else install -m 644 $$f $$dst.dist; \
			echo "$$dst: kept (it differs from the shipped one, now in $$dst.dist)"; fi; done

# Removes what install put there; a config is removed only while it is the shipped one.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ssepush-broker $(DESTDIR)$(SBINDIR)/ssepush-pusher
	rm -f $(addprefix $(DESTDIR)$(DATADIR)/ssepush/,$(notdir $(WWW)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(filter %.8,$(MAN_PAGES))))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(filter %.5,$(MAN_PAGES))))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(notdir $(UNITS)))
	rm -f $(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(DOCDIR)/examples/nginx/*.conf \
		$(DESTDIR)$(DOCDIR)/examples/cyrus/cyrus.conf $(DESTDIR)$(DOCDIR)/examples/cyrus/imapd.conf \
		$(DESTDIR)$(DOCDIR)/examples/cyrus/imapd-jmap.conf
	@set -e; for f in $(CONFS); do dst=$(DESTDIR)$(SYSCONFDIR)/ssepush/$${f##*/}; \
		rm -f $$dst.dist; \
		if [ ! -e $$dst ]; then :; \
		elif cmp -s $$f $$dst; then echo "rm -f $$dst"; rm -f $$dst; \
		else echo "$$dst: kept (changed from the shipped one)"; fi; done
	@rmdir $(DESTDIR)$(DOCDIR)/examples/nginx $(DESTDIR)$(DOCDIR)/examples/cyrus \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)/ssepush \
		$(DESTDIR)$(SYSCONFDIR)/ssepush 2>/dev/null || true

# The Debian package, built by dpkg-buildpackage from packaging/debian in a copy of
# the tree: $(BUILD)/ssepush_<version>_<arch>.deb.
deb: deb-deps
	packaging/build-deb.sh $(BUILD)/deb
	cp $(BUILD)/deb/ssepush_*.deb $(BUILD)/

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
