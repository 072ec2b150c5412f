# /etc/profile.d/devbox.sh - login shells of the devbox image.
# Debian's /etc/profile resets PATH, so put back what devbox start gave the container:
# the Python venv in front and, for a non-root user (PIP_USER=1), the bin folder of the
# packages pip installs into the home; and apply AGX Dynamics' setup_env.bash (bash only)
# unless it is already in effect (devbox bakes its variables into the image's ENV).
case ":${PATH}:" in
  *:/opt/venv/bin:*) ;;
  *) PATH="/opt/venv/bin:${PATH}" ;;
esac
if [ "${PIP_USER:-}" = 1 ] && [ -n "${HOME:-}" ]; then
  case ":${PATH}:" in
    *":${HOME}/.local/bin:"*) ;;
    *) PATH="${HOME}/.local/bin:${PATH}" ;;
  esac
fi
export PATH VIRTUAL_ENV=/opt/venv

if [ -n "${BASH_VERSION:-}" ] && [ -r /etc/devbox/agx-setup ]; then
  read -r _devbox_agx_setup </etc/devbox/agx-setup || true
  if [ -n "${_devbox_agx_setup}" ] && [ -f "${_devbox_agx_setup}" ]; then
    _devbox_agx_dir="${_devbox_agx_setup%/*}"
    case ":${PATH}:" in
      *":${AGX_BINARY_DIR:-${_devbox_agx_dir}/bin}:"*)
        [ "${AGX_DIR:-}" = "${_devbox_agx_dir}" ] || . "${_devbox_agx_setup}" ;;
      *) . "${_devbox_agx_setup}" ;;
    esac
  fi
  unset _devbox_agx_setup _devbox_agx_dir
fi
