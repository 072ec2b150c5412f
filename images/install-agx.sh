#!/bin/bash
# Installs AGX Dynamics from the build context's agx/ folder when AGX_VERSION is
# set, and records its environment:
#   /etc/devbox/agx-env.json   variables setup_env.bash sets ({} without AGX)
#   /etc/devbox/agx-setup      path of setup_env.bash (used by /etc/profile.d/devbox.sh)
# Usage: install-agx.sh DEB_DIR   (AGX_VERSION, AGX_DISTRIBUTION from the environment)
set -euo pipefail

deb_dir="${1:?usage: install-agx.sh DEB_DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p /etc/devbox
rm -f /etc/devbox/agx-setup

if [ -z "${AGX_VERSION:-}" ]; then
  if compgen -G "$deb_dir/*.deb" >/dev/null; then
    echo "install-agx: AGX_VERSION is empty; ignoring $(cd "$deb_dir" && echo *.deb)" >&2
  fi
  python3 "$here/agx-env.py" >/etc/devbox/agx-env.json
  exit 0
fi

if [ -n "${AGX_DISTRIBUTION:-}" ]; then
  deb="$deb_dir/agx-${AGX_VERSION}-${AGX_DISTRIBUTION}.deb"
else
  shopt -s nullglob
  debs=("$deb_dir/agx-${AGX_VERSION}-"*.deb)
  shopt -u nullglob
  [ ${#debs[@]} -eq 1 ] || { echo "install-agx: expected one agx-${AGX_VERSION}-*.deb in agx/, found ${#debs[@]}" >&2; exit 1; }
  deb="${debs[0]}"
fi
if [ ! -f "$deb" ]; then
  echo "install-agx: AGX_VERSION=${AGX_VERSION} but $(basename "$deb") is not in the build context's agx/ folder" >&2
  echo "install-agx: agx/ holds: $(ls -A "$deb_dir" | tr '\n' ' ')" >&2
  exit 1
fi

# apt-get needs an absolute path (or ./) to treat the argument as a file.
deb="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
apt-get update
apt-get install -y --no-install-recommends "$deb"
rm -rf /var/lib/apt/lists/*

setup="/opt/Algoryx/AGX-${AGX_VERSION}/setup_env.bash"
if [ ! -f "$setup" ]; then
  echo "install-agx: $(basename "$deb") did not install $setup" >&2
  exit 1
fi
python3 "$here/agx-env.py" "$setup" >/etc/devbox/agx-env.json
echo "$setup" >/etc/devbox/agx-setup
echo "install-agx: AGX ${AGX_VERSION} installed; environment:" >&2
cat /etc/devbox/agx-env.json >&2
