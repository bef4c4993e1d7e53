#!/usr/bin/env bash
# Builds the QuPath extension jar (build/qupath-extension-spahgc.jar) against an installed
# QuPath's jars. Not part of CI: QuPath's jars are not available there.
# Usage: QUPATH_JARS=/opt/QuPath/lib/app extension/build.sh   (after plugins/java/build.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jars=${QUPATH_JARS:?set QUPATH_JARS to the directory of QuPath's jars (Linux: QuPath/lib/app)}
binding=$here/../../java/build/spahgc.jar
[[ -f $binding ]] || { echo "no $binding: run plugins/java/build.sh first" >&2; exit 1; }
rm -rf "$here/build"
javac -Xlint:all -encoding UTF-8 --release 17 -cp "$jars/*:$binding" -d "$here/build/classes" \
  $(find "$here/src/main/java" -name '*.java')
cp -r "$here/src/main/resources/." "$here/build/classes/"
jar --create --file "$here/build/qupath-extension-spahgc.jar" -C "$here/build/classes" .
echo "built $here/build/qupath-extension-spahgc.jar"
