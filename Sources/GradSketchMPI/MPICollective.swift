import CMPI
public import GradSketchDistributed

// The MPI transport of `Collective` (filled in by the MPI slice).
