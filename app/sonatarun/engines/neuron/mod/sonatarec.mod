: SonataRecorder: samples many variables of one cell into one Vector after every time step.
:
: sonatarun's membrane and synapse reports use one recorder per cell instead of one
: Vector.record per column: the AFTER SOLVE block runs right before NEURON's own
: Vector.record sampling (same values), but copies all of the cell's columns in one C++
: loop into one growing buffer, which Python drains at block ends (reshape, no copy per
: column). Values are read through data handles, so they stay valid if NEURON reorders
: its data.

NEURON {
    THREADSAFE : each recorder touches only its own state; setup() runs before any step
    POINT_PROCESS SonataRecorder
    RANGE slot, nvars
}

ASSIGNED {
    slot
    nvars
}

VERBATIM
#include <memory>
#include <vector>
namespace {
struct SonataRecState {
    std::vector<neuron::container::data_handle<double>> handles;
    IvocVect* buf{nullptr};
};
std::vector<std::unique_ptr<SonataRecState>> sonatarec_states;
SonataRecState* sonatarec_get(double s) {
    if (s < 0) {
        return nullptr;
    }
    auto i = static_cast<std::size_t>(s);
    return i < sonatarec_states.size() ? sonatarec_states[i].get() : nullptr;
}
}  // namespace
ENDVERBATIM

PROCEDURE setup() {
VERBATIM
    sonatarec_states.emplace_back(new SonataRecState());
    slot = static_cast<double>(sonatarec_states.size() - 1);
    nvars = 0;
    sonatarec_states.back()->buf = vector_arg(1);
ENDVERBATIM
}

PROCEDURE add() {
VERBATIM
    SonataRecState* st = sonatarec_get(slot);
    if (st) {
        st->handles.push_back(hoc_hgetarg<double>(1));
        nvars = static_cast<double>(st->handles.size());
    }
ENDVERBATIM
}

INITIAL {
VERBATIM
    SonataRecState* st = sonatarec_get(slot);
    if (st && st->buf) {
        vector_resize(st->buf, 0);
    }
ENDVERBATIM
}

AFTER SOLVE {
VERBATIM
    SonataRecState* st = sonatarec_get(slot);
    if (st && st->buf) {
        int const n = vector_capacity(st->buf);
        int const k = static_cast<int>(st->handles.size());
        vector_resize(st->buf, n + k);
        double* out = vector_vec(st->buf) + n;
        for (int i = 0; i < k; ++i) {
            out[i] = *st->handles[i];
        }
    }
ENDVERBATIM
}
