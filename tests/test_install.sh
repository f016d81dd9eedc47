#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# `make install` gives a library that a program builds against with
# pkg-config and runs with: install into a staging directory, build a small
# Mach program with `pkg-config --cflags --libs libmach` (MIG's generated
# <device/device.h> included), run it; the installed hell runs.
set -eu
top=@TOP@
build=@BUILD@
sanflags='@SANFLAGS@' # a sanitized library needs a sanitized program
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# The build's own flags: a stale target must be remade as it was made.
make -s -C "$top" BUILD="$build" SAN="@SAN@" OPT="@OPT@" install DESTDIR="$stage" PREFIX=/usr \
    >/dev/null
cat > "$stage/prog.c" <<'C'
#include <device/device.h>
#include <mach.h>
#include <stdio.h>
int main(void)
{
    mach_port_t port;
    kern_return_t kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port);
    mach_port_type_t type = 0;
    if (kr == KERN_SUCCESS) {
        kr = mach_port_type(mach_task_self(), port, &type);
    }
    printf("%s\n", kr == KERN_SUCCESS && type == MACH_PORT_TYPE_RECEIVE ? "ok" : "bad");
    return kr != KERN_SUCCESS;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_PATH="$stage/usr/lib/pkgconfig" \
        pkg-config --cflags --libs libmach)
cc $sanflags -o "$stage/prog" "$stage/prog.c" $flags
out=$(LD_LIBRARY_PATH="$stage/usr/lib" "$stage/prog")
[ "$out" = ok ] || { echo "installed program said: $out"; exit 1; }
"$stage/usr/bin/hell" --version | grep -q '^hell (HELL)' || { echo "installed hell does not run"; exit 1; }
[ -x "$stage/usr/bin/machd" ] || { echo "machd not installed"; exit 1; }
echo "ok: install"
