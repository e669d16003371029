// gradsketch-mpi: the distributed commands, run under mpirun/srun (filled in by the MPI slice).
import GradSketchMPI
