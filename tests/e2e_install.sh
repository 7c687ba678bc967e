#!/usr/bin/env bash
# ffn as an installed package: `cmake --install` of this build into a fresh
# prefix, then the examples (src/examples) built against the *installed*
# headers and libraries both ways a user would, find_package(ffn) with
# ffn::ffn / ffn::ffn_static and `cc $(pkg-config --cflags --libs ffn)`, and
# run on a checkpoint and a dataset made with the installed tools: predict's
# accuracy must equal ffn-eval's, train's loss must fall (and be the same on
# 2 ranks). Also: every tool's --version is project(VERSION), the shared
# library's soname is libffn.so.<major>, every installed header compiles on
# its own and the internal ones are not installed.
SRC=$(cd "$(dirname "$0")/.." && pwd)
source "$SRC/tests/lib/common.sh"
P=$WORK/prefix
VERSION=$(sed -nE 's/^project\(ffn VERSION ([0-9]+\.[0-9]+\.[0-9]+).*/\1/p' "$SRC/CMakeLists.txt")
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "no project(ffn VERSION x.y.z) in CMakeLists.txt"
MAJOR=${VERSION%%.*}
# A sanitizer build's library needs its runtime in whatever links it.
SAN=()
grep -q '^FFN_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SAN=(-fsanitize=address,undefined)
export CFLAGS="${SAN[*]}" LDFLAGS="${SAN[*]}"
T=(timeout -k 5 120)

# ---- the install tree
"${T[@]}" cmake --install "$BUILD" --prefix "$P" >install.log || { cat install.log; fail "cmake --install"; }
for f in bin/ffn-train bin/ffn-eval bin/ffn-data bin/ffn-bench lib/libffn.a lib/libffn.so "lib/libffn.so.$MAJOR" \
         "lib/libffn.so.$VERSION" include/ffn/ffn.h include/ffn/version.h lib/cmake/ffn/ffnConfig.cmake \
         lib/cmake/ffn/ffnConfigVersion.cmake lib/cmake/ffn/ffnTargets.cmake lib/pkgconfig/ffn.pc \
         share/ffn/examples/predict.c share/ffn/examples/train.c share/ffn/examples/CMakeLists.txt; do
  [[ -e $P/$f ]] || fail "not installed: $f"
done
soname=$(objdump -p "$P/lib/libffn.so.$VERSION" | awk '$1 == "SONAME" { print $2 }')
[[ $soname == "libffn.so.$MAJOR" ]] || fail "soname '$soname', expected libffn.so.$MAJOR"
# (grep on a variable, not a pipe: pipefail would take grep -q's early exit for nm's failure)
exports=$(nm -D --defined-only "$P/lib/libffn.so")
grep -q ' T ffn_checkpoint_load$' <<<"$exports" || fail "libffn.so does not export ffn_checkpoint_load"
pass "installed tree; soname $soname"

for h in layer train_run data_rows data_hdf5 watchdog act_internal clock files; do
  [[ ! -e $P/include/ffn/$h.h && ! -e $P/include/$h.h ]] || fail "internal header $h.h installed"
done
for h in "$P"/include/ffn/*.h; do # each on its own: nothing it needs is missing from the tree
  echo "#include <ffn/$(basename "$h")>" | cc -std=c11 -Wall -Werror -fsyntax-only -I"$P/include" -x c - \
    || fail "installed header $(basename "$h") does not compile alone"
done
pass "$(ls "$P"/include/ffn | wc -l) installed headers compile alone; internal headers not installed"

for tool in ffn-train ffn-eval ffn-data ffn-bench; do
  line=$("${T[@]}" "$P/bin/$tool" --version | head -1)
  [[ $line == "$tool $VERSION" ]] || fail "$tool --version printed '$line', expected '$tool $VERSION'"
done
grep -q 'OpenBLAS.*HDF5.*MPI' <<<"$("$P/bin/ffn-eval" --version)" || fail "--version names no library versions"
grep -q "#define FFN_VERSION_STRING \"$VERSION\"" "$P/include/ffn/version.h" || fail "version.h is not $VERSION"
export PKG_CONFIG_PATH=$P/lib/pkgconfig
[[ $(pkg-config --modversion ffn) == "$VERSION" ]] || fail "pkg-config --modversion ffn: $(pkg-config --modversion ffn)"
pass "--version of every tool, version.h and ffn.pc say $VERSION"

# ---- a model and data, made with the installed tools
"$P/bin/ffn-data" synth blobs --rows 900 --features 4 --classes 3 --seed 5 --out all.h5 >/dev/null
"$P/bin/ffn-data" split all.h5 --train-out train.h5 --val-out test.h5 --val-count 300 --seed 1 >/dev/null
"${T[@]}" "$P/bin/ffn-train" --train train.h5 --model dense:16:relu,dense:3 --loss softmax_ce --epochs 4 \
  --lr 0.01 --optimizer adam --batch-size 32 --seed 1 --threads 1 --quiet --checkpoint-dir ck >/dev/null
CKPT=$(ls ck/ckpt-*.h5 | tail -1)
"${T[@]}" "$P/bin/ffn-eval" --checkpoint "$CKPT" --data test.h5 >eval.txt
eval_acc=$(field eval.txt '^eval:' accuracy)
ge "$eval_acc" 0.8 || fail "the model is too weak for the test to mean anything (accuracy $eval_acc)"

# ---- the examples against the installed package: CMake (find_package)
mkdir consumer
cp "$P/share/ffn/examples/predict.c" "$P/share/ffn/examples/train.c" consumer/
cat >consumer/CMakeLists.txt <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(ffn $VERSION EXACT REQUIRED)
add_executable(predict predict.c)
target_link_libraries(predict PRIVATE ffn::ffn)
add_executable(train_static train.c)
target_link_libraries(train_static PRIVATE ffn::ffn_static)
CMAKE
"${T[@]}" cmake -S consumer -B consumer/build -DCMAKE_PREFIX_PATH="$P" >cmake.log 2>&1 \
  || { cat cmake.log; fail "find_package(ffn) in a consumer project"; }
"${T[@]}" cmake --build consumer/build >>cmake.log 2>&1 || { cat cmake.log; fail "building against ffn::ffn"; }
grep -q "libffn.so.$MAJOR => $P/lib/" <<<"$(ldd consumer/build/predict)" || fail "predict does not run on the installed libffn.so"
! grep -q libffn <<<"$(ldd consumer/build/train_static)" || fail "train_static links libffn.so, not libffn.a"
# The installed examples' own CMakeLists.txt builds too.
"${T[@]}" cmake -S "$P/share/ffn/examples" -B examples-build -DCMAKE_PREFIX_PATH="$P" >>cmake.log 2>&1 \
  && "${T[@]}" cmake --build examples-build >>cmake.log 2>&1 || { cat cmake.log; fail "share/ffn/examples"; }
pass "CMake: find_package(ffn $VERSION) with ffn::ffn and ffn::ffn_static"

# ---- and pkg-config
# shellcheck disable=SC2046
cc -std=c11 "${SAN[@]}" consumer/predict.c -o predict-pc $(pkg-config --cflags --libs ffn) -Wl,-rpath,"$P/lib" \
  || fail "cc \$(pkg-config --cflags --libs ffn)"
# shellcheck disable=SC2046
cc -std=c11 "${SAN[@]}" consumer/train.c -o train-pc $(pkg-config --cflags --libs ffn) -Wl,-rpath,"$P/lib" \
  || fail "cc train.c with pkg-config"
pass "pkg-config: cc \$(pkg-config --cflags --libs ffn)"

# ---- predict: its accuracy is ffn-eval's, by either build
"${T[@]}" consumer/build/predict "$CKPT" test.h5 4 >predict.txt
"${T[@]}" ./predict-pc "$CKPT" test.h5 4 >predict-pc.txt
cat predict.txt
cmp -s predict.txt predict-pc.txt || fail "the two builds of predict disagree"
[[ $(grep -c '^row [0-9]*: class [0-2] p=[01]\.[0-9]* label [0-2]$' predict.txt) == 4 ]] || fail "predict printed no 4 row lines"
pred_acc=$(sed -nE 's/^accuracy ([0-9.]+) \([0-9]+ of 300 rows\)$/\1/p' predict.txt)
[[ -n $pred_acc && $pred_acc == "$eval_acc" ]] || fail "predict's accuracy '$pred_acc' is not ffn-eval's $eval_acc"
pass "predict: accuracy $pred_acc over 300 rows, as ffn-eval"

# ---- train: the loss falls, on generated data and on a dataset, on 1 and 2 ranks
"${T[@]}" ./train-pc - 10 >train-blobs.txt
"${T[@]}" consumer/build/train_static train.h5 8 >train-1.txt
mpi 2 consumer/build/train_static train.h5 8 >train-2.txt
tail -2 train-1.txt
for f in train-blobs.txt train-1.txt train-2.txt; do
  read -r first last < <(sed -nE 's/^loss ([0-9.]+) -> ([0-9.]+) .*/\1 \2/p' "$f")
  [[ -n ${last:-} ]] || fail "$f: no 'loss A -> B' line"
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }' || fail "$f: the loss did not fall by half ($first -> $last)"
done
grep -q '(2 ranks)' train-2.txt || fail "train under mpirun -np 2 did not run on 2 ranks"
l1=$(sed -nE 's/^loss .* -> ([0-9.]+) .*/\1/p' train-1.txt); l2=$(sed -nE 's/^loss .* -> ([0-9.]+) .*/\1/p' train-2.txt)
awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; exit !(d < 2e-3 && d > -2e-3) }' \
  || fail "2 ranks end at loss $l2, 1 rank at $l1 (the same global batches should give the same loss)"
pass "train: the loss falls (generated data, a dataset; 1 rank $l1, 2 ranks $l2)"
