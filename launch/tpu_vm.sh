#!/usr/bin/env bash
# Run a vlm-jax command on every worker of a Cloud TPU VM slice (the same command on all hosts; JAX finds the
# coordinator itself: VLM_JAX_DISTRIBUTED=auto).
#
#   launch/tpu_vm.sh my-v5p-64 us-east5-a "train --config=configs/slime_8b.py:data=gs://... --workdir=gs://bucket/slime_8b"
#
# Before renting the slice, check that the step fits: vlm-jax compile --config=... --topology=v5p:4x4x4
set -euo pipefail
name=${1:?TPU name}; zone=${2:?zone}; cmd=${3:?vlm-jax command}
repo=${VLM_JAX_REPO:?set VLM_JAX_REPO to the git URL of your vlm_jax clone}
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command "
  set -e
  [ -d vlm_jax ] || git clone -q $repo vlm_jax
  cd vlm_jax && git pull -q && pip install -q -e '.[tpu]'
  VLM_JAX_DISTRIBUTED=auto vlm-jax $cmd"
