/* ivc-test and ivc-bench are one static binary (half the space in the guest image): main()
 * in ivc-main.c runs ivc_bench_main when called as ivc-bench, else ivc_test_main. */
#ifndef IVC_MAIN_H
#define IVC_MAIN_H

int ivc_test_main(int argc, char** argv);
int ivc_bench_main(int argc, char** argv);

#endif /* IVC_MAIN_H */
