# Sourced by prepare_instance.sh and run_instance.sh.  VNN-COMP 2026 passes a multi-network
# instance's models as a Python list literal, [('f', 'a.onnx'), ('g', 'b.onnx')], where the
# ONNX path would be; network_args LITERAL fills NETWORK_ARGS with --network NAME=PATH pairs
# (returns 1 when the literal holds no pair).
network_args() {
    local rest="$1"
    local re="\([[:space:]]*['\"]([^'\"]+)['\"][[:space:]]*,[[:space:]]*['\"]([^'\"]+)['\"][[:space:]]*\)"
    NETWORK_ARGS=()
    while [[ "$rest" =~ $re ]]; do
        NETWORK_ARGS+=(--network "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}")
        rest="${rest#*"${BASH_REMATCH[0]}"}"
    done
    (( ${#NETWORK_ARGS[@]} > 0 ))
}

is_network_list() {
    [[ "$1" =~ ^[[:space:]]*\[ ]]
}
