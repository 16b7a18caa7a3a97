#!/usr/bin/env bash
# run-fuzz.sh DIR SECONDS - build the libFuzzer targets with clang in DIR and fuzz the codec.
#
# Sets up DIR as a clang build with -Dfuzz=true (once), builds fuzz_codec and codec_test,
# writes the seed corpus (valid encodings, from codec_test's "seeds" case) and runs fuzz_codec
# for SECONDS seconds with ASan+UBSan. Exits non-zero when the fuzzer finds a crash, a leak, an
# over-read or a failed round trip; the crashing input is left in DIR/fuzz-artifacts/.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
fi
dir=$1
seconds=$2
root=$(cd "$(dirname "$0")/../.." && pwd)

if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" "$root" -Dfuzz=true -Db_lundef=false
fi
ninja -C "$dir" -j2 tests/fuzz_codec tests/codec_test

corpus=$dir/fuzz-corpus/codec
artifacts=$dir/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
CK_RUN_CASE=seeds CODEC_SEED_DIR=$corpus "$dir/tests/codec_test"

exec "$dir/tests/fuzz_codec" "$corpus" \
	-max_total_time="$seconds" -rss_limit_mb=2048 -max_len=16384 -timeout=10 \
	-artifact_prefix="$artifacts/" -print_final_stats=1
