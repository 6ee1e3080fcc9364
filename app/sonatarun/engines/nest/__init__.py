"""NEST engine: SONATA point-neuron networks with BMTK PointNet semantics (see docs/nest.md)."""
