#!/usr/bin/env bash
# Puts the Fashion-MNIST IDX files in $1: from Debian's dataset-fashion-mnist package where apt is available,
# else through torchvision's download (needs network). Usage: fetch_fashion_mnist.sh TARGET_DIR PYTHON
set -euo pipefail
target=$1
python=${2:-python3}
debian_dir=/usr/share/datasets/fashion-mnist
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

if [ ! -f "$debian_dir/${files[3]}" ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$sudo" ] || command -v sudo >/dev/null; then
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null || true
  fi
fi

mkdir -p "$target"
if [ -f "$debian_dir/${files[3]}" ]; then
  for f in "${files[@]}"; do cp "$debian_dir/$f" "$target/.$f.tmp" && mv "$target/.$f.tmp" "$target/$f"; done
  echo "Fashion-MNIST copied from $debian_dir to $target"
else
  echo "dataset-fashion-mnist is not installed; downloading Fashion-MNIST with torchvision"
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  "$python" -c "import sys, torchvision; torchvision.datasets.FashionMNIST(sys.argv[1], download=True)" "$download"
  for f in "${files[@]}"; do mv "$download/FashionMNIST/raw/$f" "$target/$f"; done
  echo "Fashion-MNIST downloaded to $target"
fi
