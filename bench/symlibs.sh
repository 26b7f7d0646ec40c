#!/bin/sh
# bench/symlibs.sh: unstripped builds of the Debian libraries eddy links, for
# perf profiles with symbol names (Debian's libluajit, liblmdb and librdkafka
# are stripped, and their -dbgsym packages are not in the main archive).
# Fetches the Debian source packages of the installed versions with
# `apt-get source` (a private sources list: deb-src of bookworm and
# bookworm-security; nothing in /etc/apt changes), builds each with
# dpkg-buildflags' flags, and leaves the libraries, under the installed
# names, in build/symlibs/lib. Profile with
#   LD_LIBRARY_PATH=build/symlibs/lib perf record -g -- build/eddy run ...
# (or BENCH_PERF=1 LD_LIBRARY_PATH=$PWD/build/symlibs/lib make bench).
# libluajit's .text is byte-identical with the installed one (checked below);
# liblmdb's and librdkafka's are not (another compiler for liblmdb; no
# system lz4/zstd/sasl headers here for librdkafka, so bundled lz4 and no
# sasl): the same source and flags, for names, not for timings.
set -e
cd "$(dirname "$0")/.."
top=$PWD/build/symlibs
mkdir -p "$top/apt/lists/partial" "$top/apt/cache/archives/partial" "$top/src" "$top/lib"
cat > "$top/apt/sources.list" <<'EOF'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
apt() {
    apt-get -q -o Dir::Etc::SourceList="$top/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$top/apt/lists" -o Dir::Cache="$top/apt/cache" "$@"
}
apt update >/dev/null
cd "$top/src"
ver() { dpkg-query -W -f '${source:Version}' "$1"; }
for pkg in luajit:libluajit-5.1-2 lmdb:liblmdb0 librdkafka:librdkafka1; do
    src=${pkg%%:*} bin=${pkg#*:}
    if [ ! -d "$src" ]; then
        apt source --download-only "$src=$(ver "$bin")" >/dev/null 2>&1
        dpkg-source -x "$(ls ${src}_*.dsc | head -1)" "$src" >/dev/null
    fi
done
# The flags as each package's build gets them, from its source directory
# (-ffile-prefix-map names it: string lengths, hence code, depend on it).
flags() { eval "$(DEB_BUILD_MAINT_OPTIONS=$1 dpkg-buildflags --export=sh)"; }
# luajit (debian/rules: make amalg)
( cd luajit && flags "" && make -j2 amalg PREFIX=/usr MULTILIB=lib/x86_64-linux-gnu \
      CROSS=x86_64-linux-gnu- Q= E=@: >build.log 2>&1 )
cp luajit/src/libluajit.so "$top/lib/libluajit-5.1.so.2"
# lmdb (debian/rules: hardening=+all, XCFLAGS = CFLAGS; dh builds in libraries/liblmdb)
( cd lmdb && flags hardening=+all && cd libraries/liblmdb && XCFLAGS="$CFLAGS" \
      make -j2 liblmdb.so >build.log 2>&1 )
cp lmdb/libraries/liblmdb/liblmdb.so.0.0.0 "$top/lib/liblmdb.so.0"
# librdkafka (debian/rules: hardening=+bindnow; mklove configure, then the library only)
( cd librdkafka && flags hardening=+bindnow &&
  { [ -f Makefile.config ] || ./configure --prefix=/usr >build.log 2>&1; } &&
  make -C src -j2 librdkafka.so.1 >>build.log 2>&1 )
cp librdkafka/src/librdkafka.so.1 "$top/lib/librdkafka.so.1"
for l in libluajit-5.1.so.2 liblmdb.so.0 librdkafka.so.1; do
    objcopy -O binary --only-section=.text "/lib/x86_64-linux-gnu/$l" "$top/sys.text"
    objcopy -O binary --only-section=.text "$top/lib/$l" "$top/mine.text"
    if cmp -s "$top/sys.text" "$top/mine.text"; then same="identical to the installed one"
    else same="differs from the installed one (symbols for names only)"; fi
    echo "symlibs: $top/lib/$l: .text $same"
done
rm -f "$top/sys.text" "$top/mine.text"
