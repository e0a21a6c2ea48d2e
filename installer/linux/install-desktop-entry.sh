#!/bin/sh
# Adds aistack to the desktop's application menu (and, with --autostart, starts it at login).
# Run it from the unpacked folder:  ./aistack/install-desktop-entry.sh [--autostart]
# It writes only into your home: ~/.local/share/applications, ~/.local/share/icons, ~/.config/autostart.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps"
sed -e "s|^Exec=.*|Exec=\"$here/aistack\"|" "$here/aistack.desktop" > "$apps/aistack.desktop"
if [ -f "$here/aistack.png" ]; then
  mkdir -p "$icons"
  cp "$here/aistack.png" "$icons/aistack.png"
fi
echo "added $apps/aistack.desktop"
if [ "${1:-}" = "--autostart" ]; then
  autostart="${XDG_CONFIG_HOME:-$HOME/.config}/autostart"
  mkdir -p "$autostart"
  cp "$apps/aistack.desktop" "$autostart/aistack.desktop"
  echo "added $autostart/aistack.desktop (aistack starts at login)"
fi
