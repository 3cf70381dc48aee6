/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput over saved inputs, without
 * libFuzzer, so every corpus is a regression test under any compiler:
 *
 *   fuzz_<name>_corpus DIR_OR_FILE...
 *
 * Each file is read into a buffer of exactly its size (so ASan sees overreads).
 * Exits non-zero when an argument is missing, or a directory holds no inputs,
 * so the test cannot pass by running nothing.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Runs one file. Returns 0, or -1 when it cannot be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long size;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "corpus: cannot read %s\n", path);
        if (f) {
            fclose(f);
        }
        return -1;
    }
    buf = malloc(size ? (size_t)size : 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "corpus: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)size);
    free(buf);
    return 0;
}

static int skip_entry(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Runs every regular file in dir (sorted by name). Returns how many ran, or -1. */
static long run_dir(const char *dir)
{
    struct dirent **names;
    long ran = 0;
    int n = scandir(dir, &names, skip_entry, alphasort);

    if (n < 0) {
        fprintf(stderr, "corpus: cannot open directory %s\n", dir);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) != 0) {
                ran = -1;
            } else if (ran >= 0) {
                ran++;
            }
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    long total = 0;
    int failed = 0;

    if (LLVMFuzzerInitialize) {
        LLVMFuzzerInitialize(&argc, &argv);
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long ran;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "corpus: %s does not exist\n", argv[i]);
            failed = 1;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            ran = run_dir(argv[i]);
        } else {
            ran = run_file(argv[i]) == 0 ? 1 : -1;
        }
        if (ran <= 0) {
            fprintf(stderr, "corpus: %s: %s\n", argv[i], ran == 0 ? "no inputs" : "read error");
            failed = 1;
            continue;
        }
        printf("corpus: %s: %ld inputs\n", argv[i], ran);
        total += ran;
    }
    printf("corpus: %ld inputs ran%s\n", total, failed ? ", with errors" : "");
    return failed;
}
