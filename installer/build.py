"""Build the frozen app, report its size, and package it.

    python installer/build.py                 dist/aistack/ (the onedir: aistack, aistack-cli, _internal/)
    python installer/build.py --installer     + dist/aistack-<version>[-<variant>]-setup.exe (NSIS; needs makensis)
    python installer/build.py --tarball       + dist/aistack-<version>-linux-<arch>.tar.gz (.desktop file and icon inside)
    --variant NAME                            names the installer for a build variant (windows-cpu, windows-cuda)
    --distpath DIR                            where the onedir and packages go

On Windows the default dist folder is dist/windows (dist/windows/aistack/aistack.exe ...), so a
Windows build (native, or under Wine from the same checkout) never mixes with a Linux one.
PyInstaller's work folder is kept in .cache/pyinstaller[-windows] so a rebuild reuses its analysis.
The version comes from the installed package metadata (pyproject.toml), as in the spec.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "pyinstaller.spec"
NSIS_SCRIPT = ROOT / "installer" / "aistack.nsi"
LINUX_DIR = ROOT / "installer" / "linux"
APP_ICON = ROOT / "assets" / "icons" / "aistack.ico"  # drawn by app/icons.py
WINDOWS = sys.platform == "win32"
DIST = ROOT / "dist" / "windows" if WINDOWS else ROOT / "dist"
WORK = ROOT / ".cache" / ("pyinstaller-windows" if WINDOWS else "pyinstaller")
sys.path.insert(0, str(ROOT / "installer"))

from build_version import app_version, four_numbers  # noqa: E402


def build_command(dist: Path, work: Path, clean: bool = False) -> list[str]:
    """The PyInstaller command line for the spec (run it in ROOT); the onedir lands in dist/aistack."""
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(SPEC)]
    if clean:
        cmd.insert(3, "--clean")
    return cmd


def build_app(dist: Path, work: Path, clean: bool = False) -> Path:
    """Run PyInstaller on the spec; returns the onedir folder."""
    subprocess.run(build_command(dist, work, clean), check=True, cwd=ROOT)
    return dist / "aistack"


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under a path; a file counts itself."""
    if path.is_symlink() or path.is_file():  # PyInstaller links shared libraries to one copy: count a link as itself
        return path.lstat().st_size, 1
    total = count = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
            count += 1
    return total, count


def size_report(app_dir: Path) -> str:
    """A table: the onedir's total, then each top-level entry of it and of its _internal folder, largest first."""
    entries = [p for p in app_dir.iterdir() if p.name != "_internal"]
    internal = app_dir / "_internal"
    if internal.is_dir():
        entries += list(internal.iterdir())
    sizes = sorted(((tree_size(p), p.relative_to(app_dir)) for p in entries), key=lambda item: -item[0][0])
    total, count = tree_size(app_dir)
    lines = [f"{'folder':40} {'MiB':>8} {'files':>6}", f"{app_dir.name + '/ (total)':40} {total / 2**20:8.1f} {count:6}"]
    shown = 0
    rest_bytes = rest_files = 0
    for (size, files), rel in sizes:
        if shown < 25 and size >= 2**20:
            lines.append(f"{str(rel):40} {size / 2**20:8.1f} {files:6}")
            shown += 1
        else:
            rest_bytes += size
            rest_files += files
    lines.append(f"{'(everything else)':40} {rest_bytes / 2**20:8.1f} {rest_files:6}")
    return "\n".join(lines)


def installer_name(variant: str = "") -> str:
    return f"aistack-{app_version()}{'-' + variant if variant else ''}-setup.exe"


def installer_command(app_dir: Path, out_file: Path, compress: bool = True, makensis: str = "makensis",
                      path: Callable[[Path], str] = lambda p: str(p.resolve())) -> list[str]:
    """The makensis command line for installer/aistack.nsi; `path` writes each path as makensis will read it
    (the Windows lane runs Linux makensis from Wine and passes its Unix names)."""
    defines = {"VERSION": app_version(), "VI_VERSION": ".".join(map(str, four_numbers(app_version()))),
               "APP_DIR": path(app_dir), "OUT_FILE": path(out_file), "ICON": path(APP_ICON)}
    if not compress:
        defines["NO_COMPRESS"] = "1"
    return [makensis, "-V2", "-INPUTCHARSET", "UTF8", *(f"-D{k}={v}" for k, v in defines.items()), path(NSIS_SCRIPT)]


def build_installer(app_dir: Path, out_dir: Path, compress: bool = True, variant: str = "") -> Path:
    """Compile installer/aistack.nsi around the onedir; returns the setup .exe."""
    makensis = shutil.which("makensis")
    if makensis is None:
        raise SystemExit("makensis not found: install NSIS (Debian/Ubuntu: apt-get install nsis; Windows: choco install nsis)")
    out_file = out_dir / installer_name(variant)
    subprocess.run(installer_command(app_dir, out_file, compress, makensis), check=True, cwd=ROOT / "installer")
    return out_file


def build_tarball(app_dir: Path, out_dir: Path) -> Path:
    """The onedir as aistack/ in a .tar.gz, with the .desktop file, its installer script and the icon."""
    arch = platform.machine().lower() or "unknown"
    out_file = out_dir / f"aistack-{app_version()}-linux-{arch}.tar.gz"
    from PIL import Image

    icon = out_dir / "aistack.png"
    with Image.open(APP_ICON) as ico:  # an .ico opens at its largest picture (256 px)
        ico.save(icon)
    with tarfile.open(out_file, "w:gz", compresslevel=6) as tar:
        tar.add(app_dir, arcname="aistack")
        for extra in (LINUX_DIR / "aistack.desktop", LINUX_DIR / "install-desktop-entry.sh", icon):
            tar.add(extra, arcname=f"aistack/{extra.name}")
    icon.unlink()
    return out_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installer", action="store_true", help="also compile the NSIS installer into the dist folder")
    parser.add_argument("--tarball", action="store_true", help="also pack the onedir as a Linux .tar.gz")
    parser.add_argument("--no-compress", action="store_true", help="store the installer payload uncompressed (fast; for tests)")
    parser.add_argument("--variant", default="", help="build variant named in the installer's file name (windows-cpu, windows-cuda)")
    parser.add_argument("--clean", action="store_true", help="drop PyInstaller's cached analysis first")
    parser.add_argument("--distpath", type=Path, default=DIST, help=f"output folder (default {DIST.relative_to(ROOT)})")
    parser.add_argument("--workpath", type=Path, default=WORK, help="PyInstaller's work folder, kept between builds")
    args = parser.parse_args()

    started = time.monotonic()
    app_dir = build_app(args.distpath, args.workpath, clean=args.clean)
    print(f"built {app_dir} (aistack {app_version()}) in {time.monotonic() - started:.0f} s\n")
    print(size_report(app_dir))
    if args.installer:
        setup = build_installer(app_dir, args.distpath, compress=not args.no_compress, variant=args.variant)
        print(f"\ninstaller: {setup} ({setup.stat().st_size / 2**20:.1f} MiB)")
    if args.tarball:
        tarball = build_tarball(app_dir, args.distpath)
        print(f"\ntarball: {tarball} ({tarball.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
