# Build rules for a C transform; `skewless build` runs make with
#   SKEWLESS_SDK   the SDK and generated bindings (skewless.h, feature_transform.h, ...)
#   OUT            the core WebAssembly module to produce
# A transform's Makefile sets SOURCES and includes this file:
#   SOURCES = fraud_risk.c
#   include $(SKEWLESS_SDK)/skewless.mk
CC ?= clang
ifeq ($(origin CC),default)
CC = clang
endif
WASI_TARGET ?= wasm32-wasi
CFLAGS ?= -O2
SKEWLESS_CFLAGS = --target=$(WASI_TARGET) -mexec-model=reactor -std=c11 -Wall -Wextra -Werror \
	-I$(SKEWLESS_SDK)
SKEWLESS_OBJECTS = $(SKEWLESS_SDK)/skewless.c $(SKEWLESS_SDK)/feature_transform.c \
	$(SKEWLESS_SDK)/feature_transform_component_type.o

$(OUT): $(SOURCES) $(SKEWLESS_OBJECTS)
	$(CC) $(SKEWLESS_CFLAGS) $(CFLAGS) $(SOURCES) $(SKEWLESS_OBJECTS) -o $@ -lm
