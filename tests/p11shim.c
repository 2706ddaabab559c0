/* A PKCS#11 module that forwards to another one and fails on demand: the tests' way to
 * make a real module answer CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
 * CKR_SESSION_HANDLE_INVALID, ... (tests/issuer/test_keystore_pkcs11_faults.py).
 *
 * CARDSVC_P11SHIM_MODULE   the module to forward to (a copy of SoftHSM's, so that this
 *                          process's other users of SoftHSM keep their own instance)
 * CARDSVC_P11SHIM_FAULTS   a file "CODE [COUNT]" (CODE in hex): C_Sign and C_OpenSession
 *                          return CODE, COUNT more times or, without COUNT, until the
 *                          file is removed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR real;

static CK_RV injected(void)
{
    const char *path = getenv("CARDSVC_P11SHIM_FAULTS");
    FILE *file;
    unsigned long code = 0;
    long count = -1;
    int fields;

    if (path == NULL || (file = fopen(path, "r+")) == NULL)
        return CKR_OK;
    fields = fscanf(file, "%lx %ld", &code, &count);
    if (fields < 1 || (fields == 2 && count <= 0)) {
        fclose(file);
        return CKR_OK;
    }
    if (fields == 2) {
        rewind(file);
        fprintf(file, "%lx %ld            \n", code, count - 1);
    }
    fclose(file);
    return (CK_RV)code;
}

static CK_RV shim_sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                       CK_BYTE_PTR signature, CK_ULONG_PTR signature_len)
{
    CK_RV rv = injected();
    if (rv != CKR_OK)
        return rv;
    return real->C_Sign(session, data, data_len, signature, signature_len);
}

static CK_RV shim_open_session(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR application,
                               CK_NOTIFY notify, CK_SESSION_HANDLE_PTR session)
{
    CK_RV rv = injected();
    if (rv != CKR_OK)
        return rv;
    return real->C_OpenSession(slot, flags, application, notify, session);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (real == NULL) {
        const char *path = getenv("CARDSVC_P11SHIM_MODULE");
        void *library;
        CK_C_GetFunctionList get;

        if (path == NULL || (library = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)) == NULL)
            return CKR_GENERAL_ERROR;
        get = (CK_C_GetFunctionList)dlsym(library, "C_GetFunctionList");
        if (get == NULL || get(&real) != CKR_OK)
            return CKR_GENERAL_ERROR;
        shim = *real;
        shim.C_Sign = shim_sign;
        shim.C_OpenSession = shim_open_session;
    }
    *list = &shim;
    return CKR_OK;
}
