#!/usr/bin/env bash
# Checks that the QuPath script parses (syntax only: QuPath's classes are not on the classpath)
# with Debian's groovy. Usage: plugins/qupath/check.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v groovy >/dev/null || { echo "qupath: no groovy (apt-get install groovy)" >&2; exit 1; }
export JAVA_HOME=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}
for script in "$here"/*.groovy; do
  groovy -e '
    import org.codehaus.groovy.control.CompilationUnit
    import org.codehaus.groovy.control.Phases
    def unit = new CompilationUnit()
    unit.addSource(new File(args[0]))
    unit.compile(Phases.CONVERSION)
  ' "$script"
  echo "qupath: $(basename "$script") parses"
done
