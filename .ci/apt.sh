# Sourced by the .ci/setup-*.sh scripts: install the Debian packages that are missing, quietly.
# Usage: apt_ensure TAG PACKAGE...   (TAG prefixes the one line it prints)
apt_ensure() {
  local tag=$1 missing="" p
  shift
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -n "$missing" ] || return 0
  echo "[$tag] apt-get install$missing"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
