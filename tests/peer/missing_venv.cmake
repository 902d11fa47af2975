# Run as the peer_hf_transformers test when the peer-test venv was missing at configure time:
# fails, saying how to make the venv (the test must not be silently skipped).
message(FATAL_ERROR
  "peer_hf_transformers: no Python at ${PYTHON} when CMake configured this build.\n"
  "Create the venv with:  bash ${REPO}/ops/setup-python-env.sh\n"
  "then re-run cmake (or pass -DMOE_PEER_PYTHON=/path/to/python) and ctest.")
