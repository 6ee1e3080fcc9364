: SonataEcp: one cell's extracellular potentials at a set of electrodes, after every time step.
:
: sonatarun's extracellular report gives each cell one SonataEcp holding the cell's transfer
: matrix (electrodes x segments, row-major, computed in Python once) and data handles to the
: i_membrane_ of its segments. AFTER SOLVE (run right before NEURON's own Vector.record
: sampling, so the currents are the ones BMTK reads after fadvance) multiplies the two in a
: C++ loop and appends one value per electrode to a buffer that Python drains at block ends:
: a block costs n_electrodes values per step per cell instead of one per segment.

NEURON {
    THREADSAFE : each instance touches only its own state; setup() runs before any step
    POINT_PROCESS SonataEcp
    RANGE slot, nelec, nseg
}

ASSIGNED {
    slot
    nelec
    nseg
}

VERBATIM
#include <memory>
#include <vector>
namespace {
struct SonataEcpState {
    std::vector<neuron::container::data_handle<double>> handles;
    std::vector<double> transfer;  // nelec x nseg, row-major
    std::vector<double> im;        // this step's currents, reused
    int n_electrodes{0};
    IvocVect* buf{nullptr};
};
std::vector<std::unique_ptr<SonataEcpState>> sonataecp_states;
SonataEcpState* sonataecp_get(double s) {
    if (s < 0) {
        return nullptr;
    }
    auto i = static_cast<std::size_t>(s);
    return i < sonataecp_states.size() ? sonataecp_states[i].get() : nullptr;
}
}  // namespace
ENDVERBATIM

: setup(buffer, transfer matrix as a flat Vector, number of electrodes)
PROCEDURE setup() {
VERBATIM
    auto* st = new SonataEcpState();
    st->buf = vector_arg(1);
    IvocVect* tr = vector_arg(2);
    double* p = vector_vec(tr);
    st->transfer.assign(p, p + vector_capacity(tr));
    st->n_electrodes = static_cast<int>(*getarg(3));
    sonataecp_states.emplace_back(st);
    slot = static_cast<double>(sonataecp_states.size() - 1);
    nelec = st->n_electrodes;
    nseg = 0;
ENDVERBATIM
}

: add(_ref_i_membrane_ of the next segment, in the transfer matrix's column order)
PROCEDURE add() {
VERBATIM
    SonataEcpState* st = sonataecp_get(slot);
    if (st) {
        st->handles.push_back(hoc_hgetarg<double>(1));
        st->im.resize(st->handles.size());
        nseg = static_cast<double>(st->handles.size());
    }
ENDVERBATIM
}

INITIAL {
VERBATIM
    SonataEcpState* st = sonataecp_get(slot);
    if (st && st->buf) {
        vector_resize(st->buf, 0);
    }
ENDVERBATIM
}

AFTER SOLVE {
VERBATIM
    SonataEcpState* st = sonataecp_get(slot);
    if (st && st->buf) {
        std::size_t const k = st->handles.size();
        int const ne = st->n_electrodes;
        if (k * static_cast<std::size_t>(ne) == st->transfer.size()) {
            for (std::size_t j = 0; j < k; ++j) {
                st->im[j] = *st->handles[j];
            }
            int const n = vector_capacity(st->buf);
            vector_resize(st->buf, n + ne);
            double* out = vector_vec(st->buf) + n;
            double const* row = st->transfer.data();
            double const* im = st->im.data();
            for (int e = 0; e < ne; ++e, row += k) {
                double acc = 0.0;
                for (std::size_t j = 0; j < k; ++j) {
                    acc += row[j] * im[j];
                }
                out[e] = acc;
            }
        }
    }
ENDVERBATIM
}
