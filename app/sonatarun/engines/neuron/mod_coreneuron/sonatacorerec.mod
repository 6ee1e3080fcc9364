: SonataCoreRecorder: one report column under CoreNEURON, written as float32 into a shared row block.
:
: Under CoreNEURON, Vector.record keeps one Vector per column: every time step writes
: one value into each of thousands of Vectors (a cache line each), and every block end
: transposes them into report rows. One of these recorders per column instead writes
: its value straight into row (step - 1) mod nrows (a counter), column col, of a float32 buffer that
: the report probe owns (a numpy array whose address is passed in `addr`; CoreNEURON's
: in-memory mode runs in the same process). A whole row is then filled by consecutive
: instances, and draining a block is one copy. The AFTER SOLVE block runs where NEURON
: and CoreNEURON sample Vector.record, so the values are the same.

NEURON {
    THREADSAFE : each instance writes only its own column
    POINT_PROCESS SonataCoreRecorder
    POINTER ptr
    RANGE col, ncols, nrows, addr, row
}

PARAMETER {
    col = 0
    ncols = 0
    nrows = 0
    addr = 0
}

ASSIGNED {
    ptr
    row : the row the next sample goes to: (steps since finitialize - 1) mod nrows, counted, not divided
}

VERBATIM
#include <stdint.h>
ENDVERBATIM

INITIAL {
    row = 0
}

AFTER SOLVE {
VERBATIM
    if (addr != 0.) {
        float* buf = (float*) (uintptr_t) addr;
        buf[(long) row * (long) ncols + (long) col] = (float) ptr;
        row = row + 1.;
        if (row >= nrows) {
            row = 0.;
        }
    }
ENDVERBATIM
}
