# Detection of weir's prerequisites, sourced by .ci/setup and exercised by
# the setup test (tests/all/setup.rs) against directory layouts that hold only
# look-alikes of each prerequisite.
#
# Every check tests for exactly the file or the version the build uses, not
# for something with a similar name: libclang-cpp.so (the C++ interface
# library installed on many machines) is not the libclang.so that bindgen
# loads, a runtime libssl.so.3 is not the headers and pkg-config file that
# openssl-sys builds against, an old protoc is not one that compiles proto3
# `optional`.
#
# Files are looked up under $PREREQ_ROOT (empty: the machine's root), and
# commands on $PATH. Each check_NAME returns 0 when the prerequisite is there
# and 1 when it is missing; prereq_package NAME is the Debian package that
# provides it.

PREREQ_ROOT="${PREREQ_ROOT:-}"
PREREQ_MULTIARCH="${PREREQ_MULTIARCH:-$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)}"

# True if any of the (globbed) paths exists; symlinks must resolve.
_prereq_any_file() {
    local f
    for f in "$@"; do
        [ -e "$f" ] && return 0
    done
    return 1
}

# "3.21.12" >= "3.15"?
_prereq_version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]
}

# libclang, loaded at run time by bindgen (librocksdb-sys): the libclang.so
# of an LLVM installation (clang-sys asks llvm-config for its lib directory)
# or the versioned library in the multiarch directory. libclang-cpp.so.N is
# a different library and does not count.
check_libclang() {
    local r="$PREREQ_ROOT"
    _prereq_any_file "$r"/usr/lib/llvm-*/lib/libclang.so "$r"/usr/lib/llvm-*/lib/libclang.so.[0-9]* \
        "$r"/usr/lib/"$PREREQ_MULTIARCH"/libclang-[0-9]*.so "$r"/usr/lib/"$PREREQ_MULTIARCH"/libclang-[0-9]*.so.[0-9]*
}

# Clang's own headers (stddef.h, stdbool.h), which libclang needs to parse
# rocksdb/c.h; GCC's stddef.h is not found by clang.
check_clang_headers() {
    _prereq_any_file "$PREREQ_ROOT"/usr/lib/llvm-*/lib/clang/*/include/stddef.h
}

# A C++ compiler (RocksDB) with the standard library's headers.
check_cxx() {
    command -v c++ >/dev/null 2>&1 || return 1
    _prereq_any_file "$PREREQ_ROOT"/usr/include/c++/*/iostream
}

# make (librdkafka's build).
check_make() {
    command -v make >/dev/null 2>&1 && make --version 2>/dev/null | grep -q '^GNU Make'
}

check_pkg_config() {
    command -v pkg-config >/dev/null 2>&1
}

# OpenSSL's headers and pkg-config file (openssl-sys, librdkafka with TLS).
check_openssl_dev() {
    local r="$PREREQ_ROOT"
    [ -f "$r/usr/include/openssl/ssl.h" ] || return 1
    _prereq_any_file "$r/usr/lib/$PREREQ_MULTIARCH/pkgconfig/openssl.pc" "$r/usr/lib/pkgconfig/openssl.pc" \
        "$r/usr/share/pkgconfig/openssl.pc"
}

# protoc 3.15 or later (proto3 `optional` without a flag), for tonic-prost-build.
PREREQ_PROTOC_MIN=3.15
check_protoc() {
    local v
    v=$(protoc --version 2>/dev/null) || return 1
    v=${v#libprotoc }
    case "$v" in [0-9]*.[0-9]*) ;; *) return 1 ;; esac
    # protoc 22 and later print "libprotoc 25.1": the major version moved.
    case "$v" in [0-2].*) return 1 ;; esac
    _prereq_version_at_least "$v" "$PREREQ_PROTOC_MIN"
}

# kcat: an independent Kafka client the tests read topics with.
check_kcat() {
    command -v kcat >/dev/null 2>&1 && kcat -V 2>/dev/null | grep -q '^kcat - '
}

# patch: the test broker's build applies weir's patch to tansu.
check_patch() {
    command -v patch >/dev/null 2>&1 && patch --version 2>/dev/null | grep -q '^GNU patch'
}

# Node.js 18 or later with npm (componentize-js, JavaScript UDFs, the JS SDK's tests).
PREREQ_NODE_MIN=18
check_node() {
    local v
    command -v npm >/dev/null 2>&1 || return 1
    v=$(node --version 2>/dev/null) || return 1
    v=${v#v}
    _prereq_version_at_least "$v" "$PREREQ_NODE_MIN"
}

# etcd 3.4 or later, the server itself (not etcdctl, which Debian's
# etcd-client package installs alone): the cluster tests start real members.
PREREQ_ETCD_MIN=3.4
check_etcd() {
    local v
    v=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')
    case "$v" in [0-9]*.[0-9]*) ;; *) return 1 ;; esac
    _prereq_version_at_least "$v" "$PREREQ_ETCD_MIN"
}

# The Debian package that provides a prerequisite.
prereq_package() {
    case "$1" in
        libclang) echo libclang-dev ;;
        clang_headers) echo libclang-dev ;;
        cxx) echo g++ ;;
        make) echo make ;;
        pkg_config) echo pkg-config ;;
        openssl_dev) echo libssl-dev ;;
        protoc) echo protobuf-compiler ;;
        kcat) echo kcat ;;
        patch) echo patch ;;
        node) echo "nodejs npm" ;;
        etcd) echo etcd-server ;;
        *) echo "prereq_package: unknown prerequisite $1" >&2; return 1 ;;
    esac
}

# Prerequisites of the demo's build (weir without the server, Kafka and
# RocksDB), of the full build (bindgen for RocksDB, protoc for the gRPC API),
# and of the tests.
PREREQS_DEMO=(cxx make pkg_config openssl_dev)
PREREQS_BUILD=("${PREREQS_DEMO[@]}" libclang clang_headers protoc)
PREREQS_TEST=(kcat patch node etcd)

# The Debian packages to install for the named prerequisites that are
# missing, one line; prints nothing when all are there.
prereq_missing_packages() {
    local p pkgs=()
    for p in "$@"; do
        "check_$p" || pkgs+=($(prereq_package "$p"))
    done
    [ ${#pkgs[@]} -eq 0 ] || printf '%s\n' "${pkgs[@]}" | awk '!seen[$0]++' | tr '\n' ' ' | sed 's/ $//'
}
