#!/usr/bin/env bash
# Builds the Java binding (build/spahgc.jar); with `test`, also runs its JUnit tests against the
# real library and test bundle. Paths come from the environment, with these defaults:
#   SPAHGC_LIB_DIR      <repo>/target/release              (libspahgc.so)
#   SPAHGC_RUNTIME_DIR  <repo>/.spahgc                     (onnxruntime/libonnxruntime.so)
#   SPAHGC_TEST_BUNDLE  <repo>/target/test-bundle/bundle
#   SPAHGC_CLI          <repo>/target/release/spahgc
#   SPAHGC_DATA         <repo>/../shared/data              (her2st/)
#   JNA_JAR, JUNIT_DIR  /usr/share/java/jna.jar, /usr/share/java (Debian's libjna-java, junit5)
# Missing test inputs skip the tests (exit 0) unless SPAHGC_REQUIRE_DATA=1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
lib_dir=${SPAHGC_LIB_DIR:-$repo/target/release}
runtime_dir=${SPAHGC_RUNTIME_DIR:-$repo/.spahgc}
bundle=${SPAHGC_TEST_BUNDLE:-$repo/target/test-bundle/bundle}
cli=${SPAHGC_CLI:-$repo/target/release/spahgc}
data=${SPAHGC_DATA:-$repo/../shared/data}
jna=${JNA_JAR:-/usr/share/java/jna.jar}
junit=${JUNIT_DIR:-/usr/share/java}
build=$here/build

case "${1:-jar}" in
  jar | test) ;;
  *) echo "usage: $0 [jar|test]" >&2; exit 2 ;;
esac

fail() { echo "java: $*" >&2; exit 1; }
[[ -f $jna ]] || fail "no JNA jar at $jna (apt-get install libjna-java)"

javac_flags=(-Xlint:all -Werror -encoding UTF-8 --release 17)
rm -rf "$build/classes" "$build/test-classes" "$build/spahgc.jar"
javac "${javac_flags[@]}" -cp "$jna" -d "$build/classes" $(find "$here/src/main/java" -name '*.java')
jar --create --file "$build/spahgc.jar" -C "$build/classes" .
echo "java: built $build/spahgc.jar"
[[ ${1:-jar} == test ]] || exit 0

slide=$data/her2st/ST-imgs/C3.jpg
missing=()
for path in "$lib_dir/libspahgc.so" "$runtime_dir/onnxruntime/libonnxruntime.so" "$bundle/manifest.json" "$cli" \
  "$slide" "$junit/junit-platform-console-standalone.jar"; do
  [[ -e $path ]] || missing+=("$path")
done
if ((${#missing[@]})); then
  [[ ${SPAHGC_REQUIRE_DATA:-0} == 1 ]] && fail "missing ${missing[*]}"
  echo "skipping: the Java tests need ${missing[*]}"
  exit 0
fi

test_cp=$build/spahgc.jar:$jna:$junit/junit-jupiter-api.jar:$junit/apiguardian-api.jar:$junit/opentest4j.jar
javac "${javac_flags[@]}" -cp "$test_cp" -d "$build/test-classes" $(find "$here/src/test/java" -name '*.java')

# The reference: the CLI's prediction of the region the tests predict (see TestEnvironment).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cli" predict --quiet --bundle "$bundle" --her2st "$data/her2st" --section C3 --region 2500,2500,3000,3000 \
  --keep-background --no-cache --device cpu --out "$work/cli"
mkdir "$work/cache"

start=$SECONDS
status=0
java -Djna.library.path="$lib_dir" -Dspahgc.bundle="$bundle" -Dspahgc.runtime="$runtime_dir" \
  -Dspahgc.cache="$work/cache" -Dspahgc.slide="$slide" -Dspahgc.reference="$work/cli/expression.csv" \
  -jar "$junit/junit-platform-console-standalone.jar" --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
  --include-engine=junit-jupiter \
  --class-path "$build/test-classes:$build/spahgc.jar:$jna" --scan-class-path "$build/test-classes" \
  >"$build/test-output.txt" 2>&1 || status=$?
cat "$build/test-output.txt"
count() { grep -oE "\[ +[0-9]+ tests $1" "$build/test-output.txt" | grep -oE '[0-9]+' || echo '?'; }
echo "java: $(count successful) passed, $(count failed) failed of $(count found) tests in $((SECONDS - start)) s"
exit "$status"
