/* Concurrent OpenBLAS from two host threads (data-parallel scaling): 2R GEMMs 512x576 * 576x784
 * on one cpu device with 2 threads, vs R on each of two 1-thread cpu devices at once, vs R
 * alone on one thread. Built against the release library:
 * gcc -O2 -I. gemm_concurrency.c build/libpolytrain.a
 * -fopenmp -lz -lpng -ljpeg -lturbojpeg -lm -ldl -lpthread $(mpicc --showme:link) -lOpenCL -lclblast */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include "polytrain/backend.h"
#define M 512
#define K 576
#define N 784
#define R 60
typedef struct { pt_device *d; pt_buffer *b; pt_op op; } J;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static void *run(void *a){J *j=a;pt_error e;for(int r=0;r<R;r++)if(pt_device_run(j->d,&j->op,&e)){printf("%s\n",e.msg);break;}return NULL;}
static void setup(J *j,int idx,int th){pt_error e;pt_device_options o={.threads=th};pt_device_open("cpu",idx,&o,&j->d,&e);
 pt_device_alloc(j->d,(size_t)(M*K+K*N+M*N)*4,&j->b,&e);float *h=calloc(M*K+K*N+M*N,4);for(int i=0;i<M*K+K*N;i++)h[i]=(i%7)*0.1f;
 pt_mem m={j->b,0};pt_device_write(j->d,m,h,(size_t)(M*K+K*N+M*N)*4,&e);free(h);
 j->op.kind=PT_OP_GEMM;j->op.nt=3;j->op.t[0]=pt_tensor_2d(j->b,0,M,K);j->op.t[1]=pt_tensor_2d(j->b,M*K*4,K,N);j->op.t[2]=pt_tensor_2d(j->b,(M*K+K*N)*4,M,N);j->op.p.gemm.alpha=1;}
int main(void){J a,b,c;memset(&a,0,sizeof a);memset(&b,0,sizeof b);memset(&c,0,sizeof c);setup(&a,0,1);setup(&b,1,1);setup(&c,0,2);
 for(int rep=0;rep<3;rep++){
 double t0=now();run(&c);run(&c);double t2=now()-t0;          /* 2R gemms, one device, 2 threads */
 t0=now();pthread_t x,y;pthread_create(&x,0,run,&a);pthread_create(&y,0,run,&b);pthread_join(x,0);pthread_join(y,0);double tc=now()-t0; /* 2R gemms, 2 devices x 1 thread concurrently */
 t0=now();run(&a);double t1=now()-t0; /* R gemms, 1 thread */
 printf("2R gemms: 1 dev x 2 threads %.3fs | 2 devs x 1 thread concurrent %.3fs | R gemms on 1 thread alone %.3fs\n",t2,tc,t1);}
 return 0;}
