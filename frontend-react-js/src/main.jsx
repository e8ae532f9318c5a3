import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router-dom';
import { ApiContext, createApi } from './api.js';
import App from './App.jsx';
import { createAuth } from './auth.js';
import { BACKEND_URL, COGNITO } from './config.js';
import { SessionProvider } from './session.jsx';
import './styles.css';
import { initTracing } from './tracing.js';

// Before the first fetch, so every API call is traced and carries `traceparent`.
initTracing(BACKEND_URL);

const auth = createAuth(COGNITO);
const api = createApi(BACKEND_URL, undefined, { accessToken: auth.accessToken });

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <BrowserRouter>
      <SessionProvider auth={auth}>
        <ApiContext.Provider value={api}>
          <App />
        </ApiContext.Provider>
      </SessionProvider>
    </BrowserRouter>
  </StrictMode>,
);
