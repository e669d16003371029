// Baseline for the scan benchmark: a plain C program that maps a byte range of a file and
// sums it as float32 with OpenMP, the same work GradSketch's zero-copy scan does.
// Usage: scan_file FILE OFFSET COUNT REPEAT   (COUNT float32 values starting at OFFSET)
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: scan_file FILE OFFSET COUNT REPEAT\n"); return 2; }
    long offset = atol(argv[2]), count = atol(argv[3]);
    int repeat = atoi(argv[4]);
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    long page = sysconf(_SC_PAGESIZE), start = offset / page * page;
    size_t length = (size_t)(offset - start) + (size_t)count * 4;
    char *base = mmap(NULL, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, start);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    const float *values = (const float *)(base + (offset - start));
    double best = 1e30, sum = 0;
    for (int run = 0; run < repeat; run++) {
        double t = omp_get_wtime(), s = 0;
        #pragma omp parallel for reduction(+:s)
        for (long i = 0; i < count; i++) s += values[i];
        t = omp_get_wtime() - t;
        if (t < best) best = t;
        sum = s;
    }
    printf("{\"what\": \"c-scan\", \"seconds\": %.6f, \"bytes\": %ld, \"sum\": %.6f, \"threads\": %d}\n",
           best, count * 4, sum, omp_get_max_threads());
    return 0;
}
