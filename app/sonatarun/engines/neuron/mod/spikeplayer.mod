COMMENT
SpikePlayer: an artificial cell that emits events at the times held in a Vector.

sonatarun registers one SpikePlayer per virtual node with a gid, so every input
source is an ordinary cell to ParallelContext and to BBSaveState (checkpoints).
The Vector is held through a POINTER slot, not a double, so a restored
checkpoint never carries a stale address: `index` (the next element to play) and
the pending self-event are the only state, and play() can be called again after a
restore to re-attach the Vector without disturbing them.
ENDCOMMENT

NEURON {
    THREADSAFE
    ARTIFICIAL_CELL SpikePlayer
    POINTER ptr
    RANGE index
}

ASSIGNED {
    index
    etime (ms)
    ptr
}

INITIAL {
    index = 0
    next_time()
    if (index > 0) {
        net_send(etime - t, 1)
    }
}

NET_RECEIVE (w) {
    if (flag == 1) {
        net_event(t)
        next_time()
        if (index > 0) {
            net_send(etime - t, 1)
        }
    }
}

DESTRUCTOR {
VERBATIM
    void* vv = (void*)(_p_ptr);
    if (vv) {
        hoc_obj_unref(*vector_pobj(vv));
    }
ENDVERBATIM
}

PROCEDURE next_time() {
VERBATIM
    {
        void* vv;
        int i, size;
        double* px;
        i = (int)index;
        if (i >= 0) {
            vv = (void*)(_p_ptr);
            if (vv) {
                size = vector_capacity(vv);
                px = vector_vec(vv);
                if (i < size) {
                    etime = px[i];
                    index += 1.;
                } else {
                    index = -1.;
                }
            } else {
                index = -1.;
            }
        }
    }
ENDVERBATIM
}

PROCEDURE play() {
VERBATIM
    void** pv;
    void* ptmp = NULL;
    if (ifarg(1)) {
        ptmp = vector_arg(1);
        hoc_obj_ref(*vector_pobj(ptmp));
    }
    pv = (void**)(&_p_ptr);
    if (*pv) {
        hoc_obj_unref(*vector_pobj(*pv));
    }
    *pv = ptmp;
ENDVERBATIM
}
