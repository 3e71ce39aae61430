#!/bin/sh
# Cargo's build.rustc-wrapper (see config.toml beside this file): links the
# executables bridge6, ipam-prefix and firewall6 (the `plugins` crate's
# [[bin]]s; rustc sees them as crate names bridge6, ipam_prefix, firewall6)
# statically against glibc
# (-C target-feature=+crt-static, a static-pie) and runs every other rustc
# call unchanged. Needs libc.a (Debian libc6-dev, in scripts/install-deps.sh).
#
# Why a wrapper and not target rustflags: without --target, cargo also hands
# target rustflags to proc-macro crates, which rustc refuses with +crt-static
# ("cannot produce proc-macro for `serde_derive` as the target ... does not
# support these crate types"); with `build.target` set instead, every binary
# would move from target/release to target/<triple>/release. Only the final
# link of the three plugins changes: their dependencies (PIC rlibs) are the
# same as for every other build, and unit tests (`--test`) stay dynamic.
# Why static: peak RSS of each plugin process (docs/performance.md, "The
# release profile"). RUSTC_WRAPPER in the environment replaces this wrapper (and so
# the static link); cargo does not fingerprint the wrapper's flags, so an
# old target dir keeps dynamic plugins until `cargo clean -p plugins`.
name=
bin=
target=
prev=
for a in "$@"; do
  case "$prev" in
    --crate-name) name=$a ;;
    --crate-type) [ "$a" = bin ] && bin=1 ;;
    --target) target=$a ;;
  esac
  prev=$a
done
case "$target" in
  "" | *-linux-gnu*) ;;
  *) exec "$@" ;;
esac
case "$bin:$name" in
  1:bridge6 | 1:ipam_prefix | 1:firewall6)
    exec "$@" -C target-feature=+crt-static
    ;;
esac
exec "$@"
