# SPDX-License-Identifier: GPL-2.0-or-later
#
# HELL: the Hurd on Linux.  GNU make build.
#
#   make              build libmach.so, the demo, tests and benchmarks
#   make check        run the test suite (also built with ASan+UBSan)
#   make bench        run the benchmarks
#   make demo         run the MIG demo
#   make install      install into $(DESTDIR)$(PREFIX)
#
# Programs: $(BUILD)/bin/machd (the kernel process of an instance),
# $(BUILD)/bin/hell (starts and stops instances, runs tasks in them) and
# $(BUILD)/bin/hell-task (the body of a task made empty by task_create).
#
# Everything generated (MIG stubs, objects) lives in $(BUILD).

BUILD     ?= build
PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
INCDIR    ?= $(PREFIX)/include
CC        ?= gcc
SAN       ?=
VERSION   := 0.1.0

DEPS      := $(BUILD)/deps/root
MACH_INC  := $(DEPS)/usr/include/x86_64-linux-gnu
MIG       := $(DEPS)/usr/bin/x86_64-gnu-mig
GEN       := $(BUILD)/gen
OBJ       := $(BUILD)/obj

WARN      := -Wall -Wextra -Werror -Wno-unused-parameter
CSTD      := -std=gnu17
OPT       ?= -O2 -g
ifeq ($(SAN),1)
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
CPPFLAGS  := -Iinclude -I$(GEN)/include -I$(MACH_INC) -D_GNU_SOURCE
CFLAGS    := $(CSTD) $(OPT) $(WARN) $(SANFLAGS) -fPIC -pthread
# libmach is linked at start-up, not dlopen()ed: its thread-locals (reply
# port, receive buffer) can use the initial-exec model, without a call to
# __tls_get_addr on every message.
LIBCFLAGS := $(CFLAGS) -fvisibility=hidden -ftls-model=initial-exec -Ilibmach -Imachd -I$(GEN) \
             -DHELL_VERSION='"$(VERSION)"' -DHELL_BINDIR='"$(PREFIX)/bin"'
# MIG output is not ours: keep -Werror for our code, relax what MIG emits.
MIGCFLAGS := $(LIBCFLAGS) -I$(GEN)/include/mach -I$(GEN)/include/device -Wno-error -Wno-unused-variable -Wno-unused-function \
             -DMIG_EOPNOTSUPP=MIG_BAD_ID
LDFLAGS   := $(SANFLAGS) -pthread

LIB       := $(BUILD)/lib/libmach.so

# Interfaces whose user stubs libmach exports, and whose servers it runs as
# the "kernel" behind task ports.
MIG_USER_DEFS   := mach_port mach mach_host gnumach mach_i386 device
MIG_SERVER_DEFS := mach_port mach mach_host gnumach mach_i386
mach_port_DEFS  := $(MACH_INC)/mach/mach_port.defs
mach_DEFS       := $(MACH_INC)/mach/mach.defs
mach_host_DEFS  := $(MACH_INC)/mach/mach_host.defs
gnumach_DEFS    := $(MACH_INC)/mach/gnumach.defs
mach_i386_DEFS  := $(MACH_INC)/mach/x86_64/mach_i386.defs
device_DEFS     := $(MACH_INC)/device/device.defs
mach_port_HDR   := mach_port.h
mach_HDR        := mach_interface.h
mach_host_HDR   := mach_host.h
gnumach_HDR     := gnumach.h
mach_i386_HDR   := mach_i386.h
device_HDR      := ../device/device.h
# device_open_new (msgh_id 2806), which GNU Mach's kernel serves (it
# builds device.defs as KERNEL_SERVER): without this its slot is a
# `skip` and the id answers MIG_BAD_ID.
device_MIGFLAGS := -DDEVICE_ENABLE_DEVICE_OPEN_NEW

LIB_SRCS  := $(wildcard libmach/*.c)
LIB_OBJS  := $(LIB_SRCS:libmach/%.c=$(OBJ)/libmach/%.o) \
             $(MIG_USER_DEFS:%=$(OBJ)/gen/%.user.o) \
             $(MIG_SERVER_DEFS:%=$(OBJ)/gen/%.server.o) \
             $(OBJ)/gen/exc.kuser.o $(OBJ)/gen/memory_object.kuser.o
GEN_HDRS  := $(foreach d,$(MIG_USER_DEFS),$(GEN)/include/mach/$($(d)_HDR)) \
             $(MIG_SERVER_DEFS:%=$(GEN)/%.server.h) $(GEN)/exc.kuser.h \
             $(GEN)/memory_object.kuser.h

TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%) $(BUILD)/tests/test_install
TEST_DEFS := tests/hell_test.defs tests/hell_exc.defs
BENCHES   := $(BUILD)/bench/bench_rpc $(BUILD)/bench/bench_ool $(BUILD)/bench/bench_kern \
             $(BUILD)/bench/bench_pager
DEMOS     := $(BUILD)/demo/hell-demo
PROGRAMS  := $(BUILD)/bin/machd $(BUILD)/bin/hell $(BUILD)/bin/hell-task

.PHONY: all deps check bench demo install clean fuzz
# Keep generated MIG sources (make would delete them as intermediates).
.SECONDARY:
# A recipe that fails leaves no half-made target behind.
.DELETE_ON_ERROR:
all: deps $(LIB) $(PROGRAMS) $(TESTS) $(BENCHES) $(DEMOS)

deps: $(DEPS)/.ok
$(DEPS)/.ok:
	scripts/bootstrap $(BUILD)
	@touch $@

# ---- MIG ----
# (Makefile too: the MIG flags live here.)
$(GEN)/%.user.c: $(DEPS)/.ok Makefile
	@mkdir -p $(GEN)/include/mach $(GEN)/include/device
	$(MIG) -I$(MACH_INC) $($*_MIGFLAGS) -user $@ -header $(GEN)/include/mach/$($*_HDR) \
	    -server /dev/null -sheader /dev/null $($*_DEFS)
$(foreach d,$(MIG_USER_DEFS),$(eval $(GEN)/include/mach/$($(d)_HDR): $(GEN)/$(d).user.c))
$(GEN)/%.server.c: $(DEPS)/.ok
	@mkdir -p $(GEN)
	$(MIG) -I$(MACH_INC) -DSERVERPREFIX=kern_ -user /dev/null -header /dev/null \
	    -server $@ -sheader $(GEN)/$*.server.h $($*_DEFS)
$(GEN)/%.server.h: $(GEN)/%.server.c ;
# vm_set_default_memory_manager's reply moves a send right the kernel
# holds; a user-level MIG server would make one from a receive right.
$(GEN)/mach.server.c: $(DEPS)/.ok
	@mkdir -p $(GEN)
	$(MIG) -I$(MACH_INC) -DSERVERPREFIX=kern_ -user /dev/null -header /dev/null \
	    -server $@.tmp -sheader $(GEN)/mach.server.h $(mach_DEFS)
	sed -e '/^mig_internal void _Xvm_set_default_memory_manager/,/^}/ s/_MAKE_SEND/_MOVE_SEND/' \
	    $@.tmp > $@
	rm -f $@.tmp

# Test and demo interfaces: user and server stubs, compiled into the programs.
$(GEN)/tests/%.user.c $(GEN)/tests/%.server.c: tests/%.defs $(DEPS)/.ok
	@mkdir -p $(GEN)/tests
	$(MIG) -I$(MACH_INC) -user $(GEN)/tests/$*.user.c -header $(GEN)/tests/$*.h \
	    -server $(GEN)/tests/$*.server.c -sheader $(GEN)/tests/$*.server.h $<
# The sample pager's side of memory_object.defs.
$(GEN)/pager/memory_object.server.c: $(DEPS)/.ok
	@mkdir -p $(GEN)/pager
	$(MIG) -I$(MACH_INC) -DSERVERPREFIX=filepager_ -user /dev/null -header /dev/null \
	    -server $@ -sheader $(GEN)/pager/memory_object.server.h $(MACH_INC)/mach/memory_object.defs
$(GEN)/pager/memory_object.server.h: $(GEN)/pager/memory_object.server.c ;
$(GEN)/demo/%.user.c $(GEN)/demo/%.server.c: demo/%.defs $(DEPS)/.ok
	@mkdir -p $(GEN)/demo
	$(MIG) -I$(MACH_INC) -user $(GEN)/demo/$*.user.c -header $(GEN)/demo/$*.h \
	    -server $(GEN)/demo/$*.server.c -sheader $(GEN)/demo/$*.server.h $<

# ---- the library ----
$(OBJ)/libmach/%.o: libmach/%.c $(GEN_HDRS) $(wildcard libmach/*.h include/*.h include/mach/*.h) \
                    machd/protocol.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(LIBCFLAGS) -c -o $@ $<
# User stubs are the exported Mach ABI; server stubs stay hidden.
$(OBJ)/gen/%.user.o: $(GEN)/%.user.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(MIGCFLAGS) -fvisibility=default -c -o $@ $<
$(OBJ)/gen/%.server.o: $(GEN)/%.server.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(MIGCFLAGS) -c -o $@ $<
# The kernel's side of exc.defs: exception_raise sent from the kernel
# space of a faulting task (kern_exc.c).  The stub's mach_msg and reply
# port calls are renamed to kernel-space ones in the generated source.
$(GEN)/exc.kuser.c: $(DEPS)/.ok
	@mkdir -p $(GEN)
	$(MIG) -I$(MACH_INC) -Dexception_raise=kern_exception_raise -user $@.tmp \
	    -header $(GEN)/exc.kuser.h -server /dev/null -sheader /dev/null $(MACH_INC)/mach/exc.defs
	sed -e '1i #include "kern_exc_stub.h"' -e 's/\bmach_msg(/kern_exc_mach_msg(/g' \
	    -e 's/\bmig_get_reply_port(/kern_exc_reply_port(/g' \
	    -e 's/\bmig_dealloc_reply_port(/kern_exc_dealloc_reply_port(/g' \
	    -e 's/\bmig_put_reply_port(/kern_exc_put_reply_port(/g' $@.tmp > $@
	rm -f $@.tmp
$(GEN)/exc.kuser.h: $(GEN)/exc.kuser.c ;
# The kernel's side of memory_object.defs: what the VM sends pagers from
# the kernel space (vm_object.c), never blocking (vm_pager_stub.h).
$(GEN)/memory_object.kuser.c: $(DEPS)/.ok
	@mkdir -p $(GEN)
	$(MIG) -I$(MACH_INC) -DUSERPREFIX=kmo_ -user $@.tmp \
	    -header $(GEN)/memory_object.kuser.h -server /dev/null -sheader /dev/null \
	    $(MACH_INC)/mach/memory_object.defs
	sed -e '1i #include "vm_pager_stub.h"' -e 's/\bmach_msg(/vm_pager_mach_msg(/g' $@.tmp > $@
	rm -f $@.tmp
$(GEN)/memory_object.kuser.h: $(GEN)/memory_object.kuser.c ;
$(OBJ)/gen/%.kuser.o: $(GEN)/%.kuser.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(MIGCFLAGS) -c -o $@ $<
$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libmach.so.0 -Wl,--no-undefined $(LDFLAGS) -o $@ $^
	@ln -sf libmach.so $(BUILD)/lib/libmach.so.0

# ---- programs linked against libmach ----
PROG_CFLAGS  := $(CFLAGS) -I$(GEN)/tests -I$(GEN)/demo -I$(GEN)/pager -Itests -Ipager -Imachd \
                -DMIG_EOPNOTSUPP=MIG_BAD_ID
PROG_LDFLAGS := $(LDFLAGS) -L$(BUILD)/lib -Wl,-rpath,'$$ORIGIN/../lib' -lmach
TEST_GEN_OBJS := $(GEN)/tests/hell_test.user.c $(GEN)/tests/hell_test.server.c \
                 $(GEN)/tests/hell_exc.user.c $(GEN)/tests/hell_exc.server.c \
                 pager/filepager.c $(GEN)/pager/memory_object.server.c

$(BUILD)/tests/%: tests/%.c tests/test.h tests/test_types.h tests/test_region.h pager/filepager.h $(TEST_GEN_OBJS) \
                 $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PROG_CFLAGS) -Wno-error=unused-variable -o $@ $< \
	    $(TEST_GEN_OBJS) $(TEST_EXTRA_OBJS) $(PROG_LDFLAGS)
# test_devices also sends device_request.defs's one-way requests.
$(BUILD)/tests/test_devices: TEST_EXTRA_OBJS := $(GEN)/tests/device_request.user.c
$(BUILD)/tests/test_devices: $(GEN)/tests/device_request.user.c
# test_wire_forgery writes libmach's wire format by hand, with ports'
# secrets: it is linked with libmach's objects, whose headers it reads.
$(BUILD)/tests/test_wire_forgery: tests/test_wire_forgery.c tests/test.h libmach/ipc_wire_format.h \
                                  $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Ilibmach -Imachd -I$(GEN) -o $@ $< $(LIB_OBJS) $(LDFLAGS)
# test_reap_close calls vm_reap_close, libmach's own: linked the same way.
$(BUILD)/tests/test_reap_close: tests/test_reap_close.c tests/test.h tests/test_region.h \
                                libmach/vm_reap.h $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Ilibmach -Imachd -I$(GEN) -o $@ $< $(LIB_OBJS) $(LDFLAGS)
$(BUILD)/tests/test_install: tests/test_install.sh $(LIB)
	@mkdir -p $(dir $@)
	sed -e 's|@TOP@|$(CURDIR)|; s|@BUILD@|$(BUILD)|; s|@SANFLAGS@|$(SANFLAGS)|' \
	    -e 's|@SAN@|$(SAN)|; s|@OPT@|$(OPT)|' $< > $@
	chmod +x $@
$(BUILD)/bench/%: bench/%.c bench/bench.h tests/test.h pager/filepager.h $(TEST_GEN_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PROG_CFLAGS) -o $@ $< $(TEST_GEN_OBJS) $(PROG_LDFLAGS)
$(BUILD)/demo/hell-demo: demo/hell-demo.c $(TEST_GEN_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PROG_CFLAGS) -o $@ $< $(TEST_GEN_OBJS) $(PROG_LDFLAGS)

# ---- the kernel process and the launcher ----
# machd serves an instance's privileged host port (a libmach kernel
# object) and its devices (device.defs, served by machd/device.c).
MACHD_SRCS := $(wildcard machd/*.c)
$(GEN)/machd/device.server.c: $(DEPS)/.ok Makefile
	@mkdir -p $(GEN)/machd
	$(MIG) -I$(MACH_INC) $(device_MIGFLAGS) -user /dev/null -header /dev/null \
	    -server $@ -sheader $(GEN)/machd/device.server.h $(device_DEFS)
$(GEN)/machd/device.server.h: $(GEN)/machd/device.server.c ;
# i386_io_perm_create on the master port; its reply moves the send right
# machd makes (a user-level MIG server would copy one and keep its own,
# and no-senders would never come).
$(GEN)/machd/mach_i386.server.c: $(DEPS)/.ok
	@mkdir -p $(GEN)/machd
	$(MIG) -I$(MACH_INC) -DSERVERPREFIX=ds_ -user /dev/null -header /dev/null \
	    -server $@.tmp -sheader $(GEN)/machd/mach_i386.server.h $(mach_i386_DEFS)
	sed -e '/^mig_internal void _Xi386_io_perm_create/,/^}/ s/_COPY_SEND/_MOVE_SEND/' \
	    $@.tmp > $@.sed
	grep -q 'MACH_MSG_TYPE_MOVE_SEND' $@.sed
	mv $@.sed $@
	rm -f $@.tmp
$(GEN)/machd/mach_i386.server.h: $(GEN)/machd/mach_i386.server.c ;
$(OBJ)/machd/%.server.o: $(GEN)/machd/%.server.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(MIGCFLAGS) -c -o $@ $<
MACHD_MIG := device mach_i386
$(BUILD)/bin/machd: $(MACHD_SRCS) $(wildcard machd/*.h) \
                    $(MACHD_MIG:%=$(GEN)/machd/%.server.h) $(MACHD_MIG:%=$(OBJ)/machd/%.server.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Imachd -I$(GEN)/machd -o $@ $(MACHD_SRCS) \
	    $(MACHD_MIG:%=$(OBJ)/machd/%.server.o) $(PROG_LDFLAGS)
$(BUILD)/bin/hell-task: tools/hell_task.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ tools/hell_task.c $(PROG_LDFLAGS)
$(BUILD)/bin/hell: tools/hell.c machd/protocol.c machd/protocol.h $(DEPS)/.ok
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Imachd -DHELL_VERSION='"$(VERSION)"' -o $@ tools/hell.c \
	    machd/protocol.c $(LDFLAGS)

# The fuzz target: libmach's sources built by clang with libFuzzer, ASan
# and UBSan; the run is a test (tests/test_fuzz.sh) of FUZZ_SECONDS.
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS := $(CSTD) -O1 -g $(WARN) -Wno-unknown-warning-option -fvisibility=hidden -DHELL_VERSION='"$(VERSION)"' \
               -Ilibmach -Imachd -I$(GEN) -I$(GEN)/include/mach -I$(GEN)/include/device \
               -DMIG_EOPNOTSUPP=MIG_BAD_ID \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -pthread
FUZZ_SRCS   := $(LIB_SRCS) $(MIG_USER_DEFS:%=$(GEN)/%.user.c) $(MIG_SERVER_DEFS:%=$(GEN)/%.server.c) \
               $(GEN)/exc.kuser.c $(GEN)/memory_object.kuser.c
$(BUILD)/fuzz/fuzz_receive: fuzz/fuzz_receive.c $(FUZZ_SRCS) $(GEN_HDRS)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_CFLAGS) -Wno-error -o $@ $< $(FUZZ_SRCS)
$(BUILD)/tests/test_fuzz: tests/test_fuzz.sh $(BUILD)/fuzz/fuzz_receive
	@mkdir -p $(dir $@)
	sed -e 's|@FUZZER@|$(CURDIR)/$(BUILD)/fuzz/fuzz_receive|; s|@SECONDS@|$(FUZZ_SECONDS)|' $< > $@
	chmod +x $@
fuzz: $(BUILD)/fuzz/fuzz_receive

check: all $(if $(filter 1,$(SAN)),,$(BUILD)/tests/test_fuzz)
	tests/run $(BUILD)
ifneq ($(SAN),1)
	$(MAKE) BUILD=$(BUILD)-san SAN=1 OPT='-O1 -g' all
	# LeakSanitizer would report, in every child after fork(), the parent's
	# IPC tables that the child abandons on purpose (another thread may have
	# been changing them); the tests check descriptors and mappings instead.
	ASAN_OPTIONS=detect_leaks=0 tests/run $(BUILD)-san
endif

bench: all
	bench/run $(BUILD)

demo: all
	$(BUILD)/demo/hell-demo

install: $(LIB) $(PROGRAMS)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/mach $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(LIB) $(DESTDIR)$(LIBDIR)/libmach.so.$(VERSION)
	ln -sf libmach.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libmach.so.0
	ln -sf libmach.so.0 $(DESTDIR)$(LIBDIR)/libmach.so
	cp -R $(MACH_INC)/mach $(MACH_INC)/device $(MACH_INC)/mach_debug $(DESTDIR)$(INCDIR)/
	install -m 644 include/*.h $(DESTDIR)$(INCDIR)/
	install -m 644 include/mach/*.h $(GEN)/include/mach/*.h $(DESTDIR)$(INCDIR)/mach/
	install -m 644 $(GEN)/include/device/device.h $(DESTDIR)$(INCDIR)/device/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|' \
	    libmach.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/libmach.pc

clean:
	rm -rf $(BUILD)/obj $(BUILD)/gen $(BUILD)/lib $(BUILD)/bin $(BUILD)/tests $(BUILD)/bench \
	    $(BUILD)/demo
