#!/bin/sh
# Build a relocatable sonatarun AppDir from the image's build stage (Dockerfile target `appdir`).
#
# Layout (everything found relative to AppRun, so the folder works from any path):
#   AppRun                      shell entry: sets PATH/LD_LIBRARY_PATH/MPI_LIB_NRN_PATH, runs sonatarun
#   sonatarun.desktop, sonatarun.svg, .DirIcon
#   usr/bin/python3.11          Debian's interpreter; its prefix is found from its own location
#   usr/lib/python3.11/         the standard library
#   usr/lib/python3/dist-packages/  the venv's packages (NEURON, NEST, mpi4py, h5py, sonatarun, ...)
#   usr/bin/{sonatarun,nrnivmodl,...}  the venv's console scripts, re-pointed at usr/bin/python3.11
#   usr/bin/mpiexec.hydra, hydra_pmi_proxy, usr/lib/libmpich.so.12 (+ libmpi.so.12): MPICH
#   usr/lib/*.so*               every shared library those need, except glibc and the C++ runtime,
#                               which every Linux that can compile NEURON mechanisms has
#   usr/share/sonatarun/cache   the package's and the examples' mechanisms, compiled
# Usage: build-appdir.sh SRC APPDIR     (SRC = the repository; run where /opt/sonatarun/venv exists)
set -eu
SRC="$1"
APPDIR="$2"
VENV=/opt/sonatarun/venv
PY=python3.11
rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/bin" "$APPDIR/usr/lib/python3/dist-packages" "$APPDIR/usr/share/sonatarun"

# 1. The interpreter and its standard library.
cp -L "/usr/bin/$PY" "$APPDIR/usr/bin/$PY"
# libpython too: nrnivmodl (find_libpython) and NEURON's embedded interpreter need the shared library.
pylib=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR') + '/' + sysconfig.get_config_var('INSTSONAME'))")
cp -L "$pylib" "$APPDIR/usr/lib/"
ln -s "$(basename "$pylib")" "$APPDIR/usr/lib/lib$PY.so"
ln -s "$PY" "$APPDIR/usr/bin/python3"
ln -s "$PY" "$APPDIR/usr/bin/python"
tar -C /usr/lib -c --exclude='__pycache__' --exclude="$PY/test" --exclude="$PY/idlelib" \
    --exclude="$PY/tkinter" --exclude="$PY/turtledemo" --exclude="$PY/ensurepip" "$PY" |
    tar -C "$APPDIR/usr/lib" -x
# Debian's sitecustomize is a symlink into /etc; the AppDir has no /etc.
rm -f "$APPDIR/usr/lib/$PY/sitecustomize.py"

# 2. The venv's packages, where Debian's site.py looks below the (relocated) prefix.
cp -a "$VENV/lib/$PY/site-packages/." "$APPDIR/usr/lib/python3/dist-packages/"
find "$APPDIR/usr/lib/python3/dist-packages" -name '__pycache__' -prune -exec rm -rf {} +

# 3. Console scripts, with pip's /bin/sh trampoline pointing at the AppDir's interpreter.
for script in "$VENV"/bin/*; do
    [ -f "$script" ] || continue
    head -n 1 "$script" | grep -q "^#!$VENV/bin/python" || continue
    name=$(basename "$script")
    {
        echo '#!/bin/sh'
        echo "'''exec' \"\$(dirname \"\$(readlink -f \"\$0\")\")/$PY\" \"\$0\" \"\$@\""
        echo "' '''"
        tail -n +2 "$script"
    } > "$APPDIR/usr/bin/$name"
    chmod 0755 "$APPDIR/usr/bin/$name"
done

# 4. MPICH: Hydra launcher and the MPICH-ABI library.
for exe in mpiexec.hydra hydra_pmi_proxy; do cp -L "/usr/bin/$exe" "$APPDIR/usr/bin/"; done
ln -s mpiexec.hydra "$APPDIR/usr/bin/mpiexec"
ln -s mpiexec.hydra "$APPDIR/usr/bin/mpirun"
libmpich=$(readlink -f /opt/sonatarun/mpi/lib/libmpich.so.12)
cp -L "$libmpich" "$APPDIR/usr/lib/libmpich.so.12"
ln -s libmpich.so.12 "$APPDIR/usr/lib/libmpi.so.12"
# UCX (MPICH's ch4 device) dlopens its transports from <dir of libucs>/ucx.
ucxdir=$(dirname "$(readlink -f "$libmpich")")/ucx
[ -d "$ucxdir" ] && cp -a "$ucxdir" "$APPDIR/usr/lib/ucx"

# 5. Shared libraries: the closure of what the AppDir's ELF files need, minus glibc/libstdc++/libgcc_s.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libutil\.so|libresolv\.so|libnsl\.so|libanl\.so|libstdc\+\+\.so|libgcc_s\.so)'
pass=0
while :; do
    pass=$((pass + 1))
    added=0
    for f in $(find "$APPDIR" -type f \( -name '*.so*' -o -perm -u+x \)); do
        file -b "$f" | grep -q '^ELF' || continue
        LD_LIBRARY_PATH="$APPDIR/usr/lib" ldd "$f" 2>/dev/null | awk '/=> \// {print $1, $3}' |
        while read -r name path; do
            echo "$name" | grep -Eq "$skip" && continue
            case "$path" in "$APPDIR"/*) continue ;; esac
            [ -e "$APPDIR/usr/lib/$name" ] && continue
            cp -L "$path" "$APPDIR/usr/lib/$name"
            echo "$name"
        done > /tmp/appdir-added
        added=$((added + $(wc -l < /tmp/appdir-added)))
    done
    [ "$added" -eq 0 ] && break
    [ "$pass" -lt 5 ] || { echo "library closure did not converge" >&2; exit 1; }
done

# 6. Mechanisms compiled once, into the AppDir's read-only cache.
SONATARUN_CACHE="$APPDIR/usr/share/sonatarun/cache" "$VENV/bin/python" \
    "$SRC/containers/build_mechanisms.py" "$SRC/examples"
find "$APPDIR/usr/share/sonatarun/cache" -name '*.lock' -delete

# 7. Entry point, desktop integration.
install -m 0755 "$SRC/containers/appimage/AppRun" "$APPDIR/AppRun"
install -m 0644 "$SRC/containers/mpi-env.sh" "$APPDIR/usr/share/sonatarun/mpi-env.sh"
install -m 0644 "$SRC/containers/appimage/sonatarun.desktop" "$APPDIR/sonatarun.desktop"
install -m 0644 "$SRC/containers/appimage/sonatarun.svg" "$APPDIR/sonatarun.svg"
ln -s sonatarun.svg "$APPDIR/.DirIcon"
mkdir -p "$APPDIR/usr/share/applications" "$APPDIR/usr/share/icons/hicolor/scalable/apps"
cp "$APPDIR/sonatarun.desktop" "$APPDIR/usr/share/applications/"
cp "$APPDIR/sonatarun.svg" "$APPDIR/usr/share/icons/hicolor/scalable/apps/"

# 8. Smoke test from a copy elsewhere: relocatable or not, it must import both engines.
tmp=$(mktemp -d)
cp -a "$APPDIR" "$tmp/moved.AppDir"
env -i PATH=/usr/bin:/bin HOME="$tmp" "$tmp/moved.AppDir/AppRun" python -c \
    "import sys, neuron, nest, mpi4py.MPI, h5py, sonatarun; assert sys.prefix.startswith('$tmp'), sys.prefix" \
    > /dev/null
rm -rf "$tmp"
du -sh "$APPDIR"
